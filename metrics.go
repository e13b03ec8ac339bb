package longpoll

import (
	"strings"
	"time"
)

// PollOutcome says how a poll ended.
type PollOutcome string

const (
	OutcomeMessages  PollOutcome = "messages"
	OutcomeTimeout   PollOutcome = "timeout"
	OutcomeCancelled PollOutcome = "cancelled"
	OutcomeShutdown  PollOutcome = "shutdown"
	OutcomeError     PollOutcome = "error"
)

// Metrics receives the server's measurements. Implementations must be safe
// for concurrent use and cheap: they are called on the hot paths.
type Metrics interface {
	// PollsHeld adds delta to the number of polls in flight.
	PollsHeld(delta int)
	// PollEnded records a finished poll and how long it was held.
	PollEnded(outcome PollOutcome, held time.Duration)
	// Published records messages appended (duplicates excluded).
	Published(n int)
	// Delivered records messages handed to a poll reply at now.
	Delivered(now time.Time, msgs []Message)
	// GapReported records one gap in a poll reply.
	GapReported(reason GapReason)
	// BrokerError records a failed broker call; op is "append", "read" or "stat".
	BrokerError(op string)
}

type nopMetrics struct{}

func (nopMetrics) PollsHeld(int)                        {}
func (nopMetrics) PollEnded(PollOutcome, time.Duration) {}
func (nopMetrics) Published(int)                        {}
func (nopMetrics) Delivered(time.Time, []Message)       {}
func (nopMetrics) GapReported(GapReason)                {}
func (nopMetrics) BrokerError(string)                   {}

// The abilities below are optional: a Metrics that has one is found by
// type assertion at New, and a server without it skips the measurement.
// prommetrics implements them all.

// Route is a family of requests, for metrics: a small, bounded set, so
// that a label made of it stays bounded whatever paths clients ask for.
type Route uint8

const (
	RoutePoll    Route  = iota // /v1/poll
	RoutePublish               // /v1/publish
	RouteTopic                 // /v1/topics/{topic}
	RouteHealth                // /healthz and /readyz
	RouteMetrics               // /metrics, served beside the Server
	RouteAdmin                 // profiles and the admin API, served beside the Server
	RouteStatic                // the pages and scripts, served beside the Server
	RouteStream                // /v1/stream
	RouteOther                 // any other path: a 404
	NumRoutes    = iota        // how many routes there are
)

var routeNames = [NumRoutes]string{"poll", "publish", "topic", "health", "metrics", "admin", "static", "stream", "other"}

// String returns the route's label value.
func (r Route) String() string {
	if int(r) < len(routeNames) {
		return routeNames[r]
	}
	return "other"
}

// routeOf returns the route of a request for path that the Server routes.
func routeOf(path string) Route {
	switch {
	case path == "/v1/poll":
		return RoutePoll
	case path == "/v1/publish":
		return RoutePublish
	case path == "/v1/stream":
		return RouteStream
	case strings.HasPrefix(path, "/v1/topics/"):
		return RouteTopic
	case path == "/healthz" || path == "/readyz":
		return RouteHealth
	case strings.HasPrefix(path, "/v1/admin/"):
		return RouteAdmin
	}
	return RouteOther
}

// RequestMetrics records each request answered.
type RequestMetrics interface {
	// RequestServed records a request of route answered with status and a
	// body of n bytes, took after it arrived. took is zero for a poll,
	// whose hold PollEnded records. A request whose client left before
	// its answer is not recorded.
	RequestServed(route Route, status, n int, took time.Duration)
}

// PublishMetrics records acknowledged publishes.
type PublishMetrics interface {
	// PublishAcked records a publish over HTTP acknowledged (2xx) took
	// after its request arrived.
	PublishAcked(took time.Duration)
}

// Refusal is why a request was refused, for metrics: a bounded set.
type Refusal uint8

const (
	RefusalRateLimited       Refusal = iota // 429 rate_limited
	RefusalOverloaded                       // 503 overloaded: held polls or reply memory at their limit
	RefusalStoreFull                        // 503 store_full
	RefusalBrokerUnavailable                // 503 broker_unavailable
	RefusalUnauthorized                     // 401 unauthorized or token_expired
	RefusalForbidden                        // 403 forbidden
	RefusalTokenRevoked                     // 401 token_revoked
	RefusalDraining                         // 503 shutting_down or draining: the node drains
	NumRefusals              = iota         // how many reasons there are
)

var refusalNames = [NumRefusals]string{"rate_limited", "overloaded", "store_full", "broker_unavailable", "unauthorized", "forbidden", "token_revoked", "draining"}

// String returns the reason's label value.
func (r Refusal) String() string {
	if int(r) < len(refusalNames) {
		return refusalNames[r]
	}
	return "unknown"
}

// refusalOf returns the refusal an error code stands for.
func refusalOf(code string) (Refusal, bool) {
	switch code {
	case CodeRateLimited:
		return RefusalRateLimited, true
	case CodeOverloaded:
		return RefusalOverloaded, true
	case CodeStoreFull:
		return RefusalStoreFull, true
	case CodeUnavailable:
		return RefusalBrokerUnavailable, true
	case CodeUnauthorized, CodeTokenExpired:
		return RefusalUnauthorized, true
	case CodeForbidden:
		return RefusalForbidden, true
	case CodeShuttingDown, CodeDraining:
		return RefusalDraining, true
	case CodeTokenRevoked:
		return RefusalTokenRevoked, true
	}
	return 0, false
}

// RefusalMetrics records refused requests.
type RefusalMetrics interface {
	// Refused records a request refused for reason.
	Refused(reason Refusal)
}

// TokenResult is the result of checking a request's credential, for
// metrics: a bounded set.
type TokenResult uint8

const (
	TokenOK         TokenResult = iota // a principal established
	TokenInvalid                       // missing, malformed, wrongly signed or not valid here
	TokenExpired                       // expired
	TokenRevoked                       // revoked by an admin disconnect
	TokenError                         // the Authenticator failed without a coded error
	NumTokenResults = iota             // how many results there are
)

var tokenNames = [NumTokenResults]string{"ok", "invalid", "expired", "revoked", "error"}

// String returns the result's label value.
func (t TokenResult) String() string {
	if int(t) < len(tokenNames) {
		return tokenNames[t]
	}
	return "error"
}

// TokenMetrics records the Authenticator's answers.
type TokenMetrics interface {
	// TokenVerified records one check of a request's credential.
	TokenVerified(result TokenResult)
}

// abilities are the optional abilities of the server's Metrics; nil when
// it lacks one.
type abilities struct {
	req     RequestMetrics
	pub     PublishMetrics
	refused RefusalMetrics
	token   TokenMetrics
	admin   AdminMetrics
}

func abilitiesOf(m Metrics) abilities {
	var a abilities
	a.req, _ = m.(RequestMetrics)
	a.pub, _ = m.(PublishMetrics)
	a.refused, _ = m.(RefusalMetrics)
	a.token, _ = m.(TokenMetrics)
	a.admin, _ = m.(AdminMetrics)
	return a
}
