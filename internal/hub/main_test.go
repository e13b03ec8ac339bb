package hub

import (
	"testing"

	"go.uber.org/goleak"
)

// A lingering topic's sweep runs on a timer's goroutine: none may outlive
// the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
