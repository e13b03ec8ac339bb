package client_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/longpoll/longpoll/client"
)

// TestStaleTokenRefreshesOnce: token_revoked, which no server sends yet,
// is handled as token_expired: the hook is asked once more and the
// request is sent again at once with the new token.
func TestStaleTokenRefreshesOnce(t *testing.T) {
	for _, code := range []string{"token_expired", "token_revoked"} {
		t.Run(code, func(t *testing.T) {
			var hooks atomic.Int64
			hook := func(context.Context) (string, error) {
				return fmt.Sprintf("t%d", hooks.Add(1)), nil
			}
			var refused atomic.Int64
			wrap := func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); tok == "t1" {
						refused.Add(1)
						writeErr(w, http.StatusUnauthorized, code)
						return
					}
					h.ServeHTTP(w, r)
				})
			}
			s := startServer(t, serverConfig{wrap: wrap})
			c := newClient(t, s.URL, fast(client.WithToken(hook))...)
			if _, err := c.Publish(t.Context(), "t", 1); err != nil {
				t.Fatalf("publish: %v", err)
			}
			if _, err := c.Publish(t.Context(), "t", 2); err != nil {
				t.Fatalf("second publish: %v", err)
			}
			if refused.Load() != 1 || hooks.Load() != 2 {
				t.Fatalf("%d refusals, hook called %d times; want 1 and 2: the first token and one refresh", refused.Load(), hooks.Load())
			}
		})
	}
}
