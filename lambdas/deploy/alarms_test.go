package deploy_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// alarmCondition is the condition of the alarms, true exactly when the
// deploying shell sets STREAMER_ALARMS=true.
const alarmCondition = "StreamerAlarmsEnabled"

// cfnAlarm is the part of an AWS::CloudWatch::Alarm the tests check.
type cfnAlarm struct {
	AlarmName  string
	Namespace  string
	MetricName string
	Dimensions []struct {
		Name  string
		Value any
	}
	Statistic          string
	Period             int
	EvaluationPeriods  int
	Threshold          float64
	ComparisonOperator string
	TreatMissingData   string
	Metrics            []struct {
		ID         string `json:"Id"`
		Expression string
		Period     int
		ReturnData bool
	}
}

// conditionHolds evaluates a condition of the template, which must be an
// Fn::Equals of two strings (what osls leaves of ${env:...}).
func conditionHolds(t *testing.T, tpl cfnTemplate, name string) bool {
	t.Helper()
	c, ok := tpl.Conditions[name].(map[string]any)
	require.True(t, ok, "no condition %s: %v", name, tpl.Conditions)
	eq, ok := c["Fn::Equals"].([]any)
	require.True(t, ok && len(eq) == 2, "condition %s is not an Fn::Equals of two values: %v", name, c)
	a, okA := eq[0].(string)
	b, okB := eq[1].(string)
	require.True(t, okA && okB, "condition %s compares non-strings: %v", name, eq)
	return a == b
}

// deployedAlarms returns the alarms a stack of tpl creates, by logical id:
// those whose condition holds.
func deployedAlarms(t *testing.T, tpl cfnTemplate) map[string]cfnAlarm {
	t.Helper()
	out := map[string]cfnAlarm{}
	for _, id := range tpl.ofType("AWS::CloudWatch::Alarm") {
		r := tpl.Resources[id]
		require.Equal(t, alarmCondition, r.Condition, "alarm %s is not switched by STREAMER_ALARMS", id)
		if !conditionHolds(t, tpl, r.Condition) {
			continue
		}
		var a cfnAlarm
		tpl.props(t, id, "AWS::CloudWatch::Alarm", &a)
		out[id] = a
	}
	return out
}

// TestAlarms packages serverless.yml with STREAMER_ALARMS unset, false and
// true: the alarms exist exactly when it is true, and watch the
// processor's stream and errors, the failure queue and PROCESSING_FAILED.
func TestAlarms(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{nil, {"STREAMER_ALARMS": "false"}, {"STREAMER_ALARMS": "yes"}} {
		assert.Empty(t, deployedAlarms(t, packageTemplate(t, env)), "alarms with %v", env)
	}
	tpl := packageTemplate(t, map[string]string{"STREAMER_ALARMS": "true"})
	alarms := deployedAlarms(t, tpl)
	require.ElementsMatch(t, []string{"ProcessorIteratorAgeAlarm", "ProcessorFailureQueueAlarm", "ProcessorErrorsAlarm", "ProcessingFailedAlarm"}, keys(alarms))

	dim := func(a cfnAlarm) (string, string) {
		require.Len(t, a.Dimensions, 1)
		return a.Dimensions[0].Name, mustRender(t, a.Dimensions[0].Value)
	}
	processor := "{" + functionID("processor") + "}"

	age := alarms["ProcessorIteratorAgeAlarm"]
	assert.Equal(t, "AWS/Lambda", age.Namespace)
	assert.Equal(t, "IteratorAge", age.MetricName)
	name, value := dim(age)
	assert.Equal(t, "FunctionName", name)
	assert.Equal(t, processor, value, "the processor, whose event source is the stream")
	assert.Equal(t, "Maximum", age.Statistic)

	queue := alarms["ProcessorFailureQueueAlarm"]
	assert.Equal(t, "AWS/SQS", queue.Namespace)
	assert.Equal(t, "ApproximateNumberOfMessagesVisible", queue.MetricName)
	name, value = dim(queue)
	assert.Equal(t, "QueueName", name)
	assert.Equal(t, "{"+deadLetterQueue(t, tpl)+".QueueName}", value, "the queue the processor's failures go to")
	assert.Zero(t, queue.Threshold, "one message is one too many")
	assert.Equal(t, "GreaterThanThreshold", queue.ComparisonOperator)

	errs := alarms["ProcessorErrorsAlarm"]
	assert.Equal(t, "AWS/Lambda", errs.Namespace)
	assert.Equal(t, "Errors", errs.MetricName)
	name, value = dim(errs)
	assert.Equal(t, "FunctionName", name)
	assert.Equal(t, processor, value)
	assert.Equal(t, "Sum", errs.Statistic)

	failed := alarms["ProcessingFailedAlarm"]
	require.Len(t, failed.Metrics, 1)
	q := failed.Metrics[0]
	assert.True(t, q.ReturnData)
	assert.Positive(t, q.Period)
	assert.Equal(t, `SELECT SUM("requests") FROM SCHEMA("Streamer", action, code, outcome) WHERE code = 'PROCESSING_FAILED'`, q.Expression)

	for id, a := range alarms {
		assert.True(t, strings.HasPrefix(a.AlarmName, "streamer-"+stage+"-"), "%s: name %q", id, a.AlarmName)
		assert.Equal(t, "notBreaching", a.TreatMissingData, "%s: no data is no trouble", id)
		assert.Positive(t, a.EvaluationPeriods, id)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
