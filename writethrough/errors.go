package writethrough

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/translate"
)

// SQLSTATEs for Stripe's answers (the table is in doc.go).
const (
	codeCardError        = "P0001" // raise_exception: a business rule said no
	codeNotFound         = "P0002" // no_data_found
	codeInvalidParam     = "22023" // invalid_parameter_value
	codeWrongState       = "55000" // object_not_in_prerequisite_state
	codeRateLimit        = "53400" // configuration_limit_exceeded
	codeStripeUnavail    = "58000" // system_error
	codeStripeIO         = "58030" // io_error
	codeTimeout          = "57014" // query_canceled
	codeAuth             = "28000" // invalid_authorization_specification
	codeStripePermission = "42501" // insufficient_privilege
	codeConflict         = "55P03" // lock_not_available
)

// stripeCode maps a Stripe error to a SQLSTATE.
func stripeCode(e *stripeapi.Error) string {
	switch {
	case e.Type == "card_error":
		return codeCardError
	case e.HTTPStatus == http.StatusNotFound || e.Code == "resource_missing":
		return codeNotFound
	case e.Code == "lock_timeout" || e.HTTPStatus == http.StatusConflict:
		// Stripe sends lock_timeout as a 429 (another request holds the
		// object), and a 409 when another attempt with the same
		// idempotency key still runs: both are a lock, not the rate.
		return codeConflict
	case e.HTTPStatus == http.StatusTooManyRequests || e.Type == "rate_limit_error":
		return codeRateLimit
	case e.HTTPStatus == http.StatusUnauthorized:
		return codeAuth
	case e.HTTPStatus == http.StatusForbidden:
		return codeStripePermission
	case e.HTTPStatus >= 500 || e.Type == "api_error":
		return codeStripeUnavail
	case e.Type == "idempotency_error":
		return codeWrongState
	case e.Param != "" || strings.HasPrefix(e.Code, "parameter_"):
		return codeInvalidParam
	case e.Type == "invalid_request_error":
		return codeWrongState
	}
	return codeStripeUnavail
}

// mayHaveTakenEffect is the DETAIL clause for a write whose outcome is
// unknown.
const mayHaveTakenEffect = "the Stripe call may still have taken effect: the events loop will bring the result into the table"

// notReached is the DETAIL clause for a call none of whose attempts got a
// connection to Stripe (stripeapi.NotSentError): it certainly changed
// nothing, and the client may simply retry.
const notReached = "Stripe was not reached (no connection): nothing was changed"

// notReachedCall is said in place of notReached when the failed call
// never reached Stripe but other calls of the statement did: what they
// changed stands (the rest of the DETAIL says what), so the statement is
// not to be repeated as it is.
const notReachedCall = "this call did not reach Stripe (no connection) and changed nothing, but the statement's calls that did reach Stripe stand"

// callOutcome is what a failed call is known to have done at Stripe,
// which its DETAIL says (clause).
type callOutcome uint8

const (
	outcomeAnswered callOutcome = iota // a definite answer: nothing to add
	outcomeUnknown                     // it may have taken effect
	outcomeNotSent                     // it certainly never reached Stripe
)

// outcomeOf says what the call of method that failed with err did. A
// write (not a GET) that failed without a definite answer (no answer, a
// cancel, a 5xx, a 2xx whose body can't be read) may have taken effect.
func outcomeOf(err error, method string) callOutcome {
	switch {
	case stripeapi.NotSent(err):
		return outcomeNotSent
	case mayHaveTakenEffectOf(err, method):
		return outcomeUnknown
	}
	return outcomeAnswered
}

// clause is the DETAIL clause for o ("" for none). statementReached says
// whether other calls of the statement reached Stripe (or may have): a
// call that never reached it then did not leave everything unchanged.
func (o callOutcome) clause(statementReached bool) string {
	switch {
	case o == outcomeUnknown:
		return mayHaveTakenEffect
	case o == outcomeNotSent && statementReached:
		return notReachedCall
	case o == outcomeNotSent:
		return notReached
	}
	return ""
}

// addDetail appends clause, when there is one, to e's DETAIL.
func addDetail(e *pgproto3.ErrorResponse, clause string) {
	if clause != "" {
		e.Detail = strings.TrimPrefix(e.Detail+"; "+clause, "; ")
	}
}

// stripeError turns a failed Stripe call, the statement's only one, into
// an ErrorResponse whose DETAIL says what the call did at Stripe when it
// did not answer (see outcomeOf). A statement of several calls decides
// that clause once its other calls are known (Interceptor.Execute).
func stripeError(err error, call string) *pgproto3.ErrorResponse {
	e := stripeErrorResponse(err, call)
	method, _, _ := strings.Cut(call, " ")
	addDetail(e, outcomeOf(err, method).clause(false))
	return e
}

// mayHaveTakenEffectOf reports whether a failed call of method may have
// taken effect at Stripe (stripeError's DETAIL then says so); callers keep
// this beside the error rather than read the DETAIL's text back.
func mayHaveTakenEffectOf(err error, method string) bool {
	return method != "GET" && unknownOutcome(err)
}

func unknownOutcome(err error) bool {
	if stripeapi.NotSent(err) {
		return false // no attempt got a connection
	}
	var se *stripeapi.Error
	if errors.As(err, &se) {
		// A 2xx is an error only when its body can't be read: the call
		// took effect, but what it made is unknown. A 409 is Stripe still
		// running an earlier attempt with the same idempotency key
		// (idempotency_key_in_use), which may yet take effect.
		return se.HTTPStatus >= 500 || se.HTTPStatus == 409 || (se.HTTPStatus >= 200 && se.HTTPStatus < 300)
	}
	return true // no answer: a network error, a timeout, a cancel
}

func stripeErrorResponse(err error, call string) *pgproto3.ErrorResponse {
	var se *stripeapi.Error
	if errors.As(err, &se) {
		var d []string
		d = append(d, "Stripe "+se.Type)
		if se.Code != "" {
			d = append(d, "code "+se.Code)
		}
		if se.DeclineCode != "" {
			d = append(d, "decline_code "+se.DeclineCode)
		}
		if se.Param != "" {
			d = append(d, "param "+se.Param)
		}
		if se.RequestID != "" {
			d = append(d, "request "+se.RequestID)
		}
		d = append(d, fmt.Sprintf("HTTP %d on %s", se.HTTPStatus, call))
		msg := se.Message
		if msg == "" {
			msg = fmt.Sprintf("Stripe answered HTTP %d", se.HTTPStatus)
		}
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: stripeCode(se),
			Message: msg, Detail: strings.Join(d, ", "), Hint: se.DocURL}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		msg := "canceling statement: Stripe did not answer in time"
		if stripeapi.NotSent(err) {
			msg = "canceling statement: could not connect to Stripe in time"
		}
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: codeTimeout,
			Message: msg, Detail: call}
	}
	if errors.Is(err, context.Canceled) {
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: codeTimeout,
			Message: "canceling statement due to user request", Detail: call}
	}
	// Not 08001 even when no connection to Stripe was had: class 08 tells
	// clients their own connection failed, and pools (HikariCP, pgx) drop
	// it, while the session is fine.
	msg := "could not reach Stripe: "
	if stripeapi.NotSent(err) {
		msg = "could not connect to Stripe: "
	}
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: codeStripeIO,
		Message: msg + err.Error(), Detail: call}
}

// translateError turns a plan error into an ErrorResponse.
func translateError(e *translate.Error) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: e.Code,
		Message: e.Message, Detail: e.Detail, Hint: e.Hint}
}

// pgError passes an error from the client's own connection on as Postgres
// sent it, every field kept (psql's VERBOSITY verbose shows LOCATION and
// the internal query as directly); anything else (a broken connection)
// becomes a generic error.
func pgError(err error) *pgproto3.ErrorResponse {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return proxy.ErrorResponse(pe)
	}
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "08006",
		Message: "pgstripe: upstream connection failed: " + err.Error()}
}

func errorResponse(code, format string, args ...any) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: fmt.Sprintf(format, args...)}
}

// heldError is pgError, except that rows past Config.MaxHeld
// (*proxy.ResultTooLargeError) get tooLarge's refusal, given the limit
// as text: the error's own, which held.query and ours set to the
// statement's limit (not what was left of it).
func heldError(err error, tooLarge func(limit string) *pgproto3.ErrorResponse) *pgproto3.ErrorResponse {
	var tl *proxy.ResultTooLargeError
	if !errors.As(err, &tl) {
		return pgError(err)
	}
	return tooLarge(sizeText(tl.Limit))
}

func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

func limitResponse(msg, detail, hint string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: translate.CodeProgramLimitExceeded,
		Message: msg, Detail: detail, Hint: hint}
}

// valuesTooLarge refuses a statement whose evaluated rows (the values to
// send, a DELETE's RETURNING) are past the limit; nothing was called.
func valuesTooLarge(st *translate.Statement) func(string) *pgproto3.ErrorResponse {
	return func(limit string) *pgproto3.ErrorResponse {
		what, hint := "its values", "Stripe takes far less in a request: look for a large text or jsonb value, or send it in parts"
		if st.Op == translate.Delete && st.Eval.Returns {
			what, hint = "its rows and RETURNING", "return less (read the large values with a SELECT before the DELETE)"
		}
		return limitResponse(fmt.Sprintf("%s on stripe.%s: %s take more than %s, pgstripe's limit for the data of one write",
			st.Op, st.Table.Name, what, limit), "Stripe was not called", hint)
	}
}

// onceTooLarge refuses a statement whose WITH query name, which RETURNING
// reads and pgstripe holds to give every query the same rows, is past the
// limit; nothing was called.
func onceTooLarge(name string) func(string) *pgproto3.ErrorResponse {
	return func(limit string) *pgproto3.ErrorResponse {
		return limitResponse(fmt.Sprintf("WITH query %q takes more than %s, pgstripe's limit for the data of one write: RETURNING reads it, so pgstripe evaluates it once and holds its rows", name, limit),
			"Stripe was not called",
			"have the WITH query give only what RETURNING needs (an aggregate: WITH w AS (SELECT count(*) …)), or run it in a statement of its own")
	}
}

// returningTooLarge is the error of a RETURNING past the limit; the
// calls are done (the caller adds what reached Stripe).
func returningTooLarge(st *translate.Statement) func(string) *pgproto3.ErrorResponse {
	return func(limit string) *pgproto3.ErrorResponse {
		return limitResponse(fmt.Sprintf("RETURNING of this %s on stripe.%s takes more than %s, pgstripe's limit for the data of one write", st.Op, st.Table.Name, limit),
			"", "return the ids, and read the large values with a SELECT after the write")
	}
}

// preparedTooLarge refuses an EXECUTE whose prepared statements' texts,
// which pgstripe reads to know what they write, are past the limit.
func preparedTooLarge(limit string) *pgproto3.ErrorResponse {
	return limitResponse(fmt.Sprintf("the text of the prepared statement this EXECUTE runs takes more than %s, pgstripe's limit for what it reads of one statement", limit),
		"Stripe was not called", "run it through the extended protocol (Bind and Execute), as drivers do")
}
