package lambdaapp

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/streamer-go/streamer/middleware"
)

// Where the HS256 secret may be read from instead of STREAMER_JWT_SECRET,
// so that it is not in the Lambda's configuration in plain text.
const (
	// EnvJWTSecretSSM names an SSM Parameter Store parameter (a
	// SecureString, such as /myapp/jwt-secret) that holds the secret. The
	// connect Lambda needs ssm:GetParameter on it, and kms:Decrypt on its
	// key when that is a customer managed key.
	EnvJWTSecretSSM = "STREAMER_JWT_SECRET_SSM"
	// EnvJWTSecretARN names a Secrets Manager secret (its ARN or name)
	// whose SecretString is the secret. The connect Lambda needs
	// secretsmanager:GetSecretValue on it, and kms:Decrypt on its key when
	// that is a customer managed key.
	EnvJWTSecretARN = "STREAMER_JWT_SECRET_ARN"
)

// secretSource says where cfg's secret is read from, "" when from nowhere.
func (c Config) secretSource() string {
	switch {
	case c.JWTSecretSSM != "":
		return EnvJWTSecretSSM + "=" + c.JWTSecretSSM
	case c.JWTSecretARN != "":
		return EnvJWTSecretARN + "=" + c.JWTSecretARN
	}
	return ""
}

// ResolveJWTSecret reads the HS256 secret named by cfg.JWTSecretSSM (SSM
// Parameter Store, decrypted) or cfg.JWTSecretARN (Secrets Manager) into
// cfg.JWTSecret, with clients made from awsCfg, which honour
// AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL_SECRETS_MANAGER. It does
// nothing when neither is set. [New] calls it once for the connect
// function, the only one that verifies tokens: so the secret is read once
// per cold start and kept in the verifier. A secret shorter than
// [middleware.MinSecretLen] bytes is an error.
func ResolveJWTSecret(ctx context.Context, cfg *Config, awsCfg aws.Config) error {
	var (
		secret string
		err    error
	)
	switch {
	case cfg.JWTSecretSSM != "":
		var out *ssm.GetParameterOutput
		out, err = ssm.NewFromConfig(awsCfg).GetParameter(ctx, &ssm.GetParameterInput{
			Name: aws.String(cfg.JWTSecretSSM), WithDecryption: aws.Bool(true),
		})
		if err == nil {
			if out.Parameter == nil || out.Parameter.Value == nil {
				err = errors.New("the parameter has no value")
			} else {
				secret = *out.Parameter.Value
			}
		}
	case cfg.JWTSecretARN != "":
		var out *secretsmanager.GetSecretValueOutput
		out, err = secretsmanager.NewFromConfig(awsCfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
			SecretId: aws.String(cfg.JWTSecretARN),
		})
		if err == nil {
			switch {
			case out.SecretString != nil:
				secret = *out.SecretString
			case len(out.SecretBinary) > 0:
				secret = string(out.SecretBinary)
			default:
				err = errors.New("the secret has no value")
			}
		}
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("lambdaapp: read the JWT secret (%s): %w", cfg.secretSource(), err)
	}
	if len(secret) < middleware.MinSecretLen {
		return fmt.Errorf("lambdaapp: the JWT secret of %s is %d bytes; it must be at least %d", cfg.secretSource(), len(secret), middleware.MinSecretLen)
	}
	cfg.JWTSecret = []byte(secret)
	return nil
}
