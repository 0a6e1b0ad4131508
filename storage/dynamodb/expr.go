package dynamodb

import (
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// expr builds an update and condition expression with their placeholders.
// Every attribute name goes through a placeholder, so reserved words such as
// status, data and ttl need no special care.
type expr struct {
	set    []string
	remove []string
	add    []string
	names  map[string]string
	values item
}

func newExpr() *expr {
	return &expr{names: map[string]string{}, values: item{}}
}

// n returns the placeholder of attribute name attr.
func (e *expr) n(attr string) string {
	p := "#" + attr
	e.names[p] = attr
	return p
}

// v returns a placeholder for value av.
func (e *expr) v(av types.AttributeValue) string {
	p := ":v" + strconv.Itoa(len(e.values))
	e.values[p] = av
	return p
}

// s returns a placeholder for the string value s.
func (e *expr) s(s string) string { return e.v(str(s)) }

// ms returns a placeholder for t in epoch milliseconds.
func (e *expr) ms(t time.Time) string { return e.v(millis(t)) }

// setTo adds "SET attr = value".
func (e *expr) setTo(attr, placeholder string) {
	e.set = append(e.set, e.n(attr)+" = "+placeholder)
}

// del adds "REMOVE attr".
func (e *expr) del(attr string) { e.remove = append(e.remove, e.n(attr)) }

// setTime sets attr to t, or removes it when t is zero.
func (e *expr) setTime(attr string, t time.Time) {
	if t.IsZero() {
		e.del(attr)
		return
	}
	e.setTo(attr, e.ms(t))
}

// increment adds "ADD attr 1".
func (e *expr) increment(attr string) {
	e.add = append(e.add, e.n(attr)+" "+e.v(num(1)))
}

// update returns the update expression.
func (e *expr) update() *string {
	var parts []string
	if len(e.set) > 0 {
		parts = append(parts, "SET "+strings.Join(e.set, ", "))
	}
	if len(e.remove) > 0 {
		parts = append(parts, "REMOVE "+strings.Join(e.remove, ", "))
	}
	if len(e.add) > 0 {
		parts = append(parts, "ADD "+strings.Join(e.add, ", "))
	}
	s := strings.Join(parts, " ")
	return &s
}

// alive is the condition that the item exists and has not expired at now,
// the store's clock.
func (e *expr) alive(now time.Time) string {
	return "attribute_exists(" + e.n(AttrPK) + ") AND (attribute_not_exists(" + e.n(attrExpiresAt) + ") OR " +
		e.n(attrExpiresAt) + " >= " + e.ms(now) + ")"
}

// attemptIs is the fencing condition: the request's attempt is attempt. An
// attempt of 0 is stored as no attribute.
func (e *expr) attemptIs(attempt int) string {
	a := e.n(attrAttempt)
	cond := a + " = " + e.v(num(int64(attempt)))
	if attempt == 0 {
		cond = "(attribute_not_exists(" + a + ") OR " + cond + ")"
	}
	return cond
}

// statusIn is the condition that the status is one of sts.
func (e *expr) statusIn(sts ...string) string {
	ps := make([]string, len(sts))
	for i, st := range sts {
		ps[i] = e.s(st)
	}
	return e.n(attrStatus) + " IN (" + strings.Join(ps, ", ") + ")"
}

// valuesOrNil returns the expression values, or nil when there are none
// (DynamoDB rejects an empty map).
func (e *expr) valuesOrNil() item {
	if len(e.values) == 0 {
		return nil
	}
	return e.values
}

func (e *expr) namesOrNil() map[string]string {
	if len(e.names) == 0 {
		return nil
	}
	return e.names
}
