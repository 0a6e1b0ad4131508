package lambdaapp

import (
	"errors"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// FromEventImage converts a stream image as Lambda delivers it (the
// NewImage, OldImage or Keys of a record) into the SDK's attribute values,
// so that storage/dynamodb reads it with the same code as its own items.
// Every attribute type is converted, lists and maps recursively.
func FromEventImage(img map[string]events.DynamoDBAttributeValue) (map[string]types.AttributeValue, error) {
	out := make(map[string]types.AttributeValue, len(img))
	for k, v := range img {
		av, err := FromEventValue(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", k, err)
		}
		out[k] = av
	}
	return out, nil
}

// errEmptyValue is the zero events.DynamoDBAttributeValue, which claims to
// be binary but holds nothing (JSON decoding never makes one).
var errEmptyValue = errors.New("empty attribute value")

// FromEventValue converts one attribute value; see [FromEventImage].
func FromEventValue(v events.DynamoDBAttributeValue) (types.AttributeValue, error) {
	switch v.DataType() {
	case events.DataTypeString:
		return &types.AttributeValueMemberS{Value: v.String()}, nil
	case events.DataTypeNumber:
		return &types.AttributeValueMemberN{Value: v.Number()}, nil
	case events.DataTypeBinary:
		b, err := binaryOf(v)
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberB{Value: b}, nil
	case events.DataTypeBoolean:
		return &types.AttributeValueMemberBOOL{Value: v.Boolean()}, nil
	case events.DataTypeNull:
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case events.DataTypeStringSet:
		return &types.AttributeValueMemberSS{Value: v.StringSet()}, nil
	case events.DataTypeNumberSet:
		return &types.AttributeValueMemberNS{Value: v.NumberSet()}, nil
	case events.DataTypeBinarySet:
		return &types.AttributeValueMemberBS{Value: v.BinarySet()}, nil
	case events.DataTypeList:
		list := v.List()
		out := make([]types.AttributeValue, len(list))
		for i, e := range list {
			av, err := FromEventValue(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = av
		}
		return &types.AttributeValueMemberL{Value: out}, nil
	case events.DataTypeMap:
		m, err := FromEventImage(v.Map())
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberM{Value: m}, nil
	default:
		return nil, fmt.Errorf("unknown attribute type %d", v.DataType())
	}
}

// binaryOf reads a B value. The accessor of the zero value panics (it holds
// no []byte): report that as an error instead.
func binaryOf(v events.DynamoDBAttributeValue) (b []byte, err error) {
	defer func() {
		if recover() != nil {
			b, err = nil, errEmptyValue
		}
	}()
	return v.Binary(), nil
}
