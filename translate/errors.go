package translate

import "fmt"

// SQLSTATE codes translate and writethrough answer with. Only codes that
// Postgres itself uses for the same situation, so clients and ORMs that
// branch on them do the right thing.
const (
	CodeFeatureNotSupported   = "0A000" // the statement shape or operation has no Stripe equivalent
	CodeUndefinedColumn       = "42703" // unknown column, or a column Stripe does not accept here
	CodeDuplicateColumn       = "42701"
	CodeProgramLimitExceeded  = "54000" // more than MaxRows rows
	CodeInsufficientPrivilege = "42501"
	CodeInFailedTransaction   = "25P02"
	CodeNotNullViolation      = "23502" // NULL for a field Stripe cannot unset
	CodeInvalidParameterValue = "22023"
	CodeSyntaxError           = "42601"
	CodeStatementTooComplex   = "54001" // nested beyond what the parser here reads
)

// MaxRows is the most rows one statement may write. Each row is one Stripe
// call; more would hold a client for minutes under the rate limit.
const MaxRows = 100

// Error is an error with a SQLSTATE, ready to become an ErrorResponse.
type Error struct {
	Code    string
	Message string
	Detail  string
	Hint    string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.Code)
	if e.Detail != "" {
		s += "; " + e.Detail
	}
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) withHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

func (e *Error) withDetail(format string, args ...any) *Error {
	e.Detail = fmt.Sprintf(format, args...)
	return e
}
