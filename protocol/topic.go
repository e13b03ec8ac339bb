package protocol

// Limits of the protocol that do not depend on a server's settings.
const (
	// MaxTopicLen is the longest topic name, in bytes.
	MaxTopicLen = 256
	// MaxIDLen is the longest idempotency key, in bytes.
	MaxIDLen = 256
	// DefaultPollLimit is how many messages a poll returns at most when
	// it names no limit; MaxPollLimit caps the limit it names.
	DefaultPollLimit = 100
	MaxPollLimit     = 1000
	// MaxCursorTopics is how many topics one cursor may hold.
	MaxCursorTopics = 1000
)

// ReservedPrefix starts the names of the server's own topics, in any
// case: clients may not publish to them, and only an admin may read them.
const ReservedPrefix = "_longpoll."

// ValidateTopic reports whether name is a valid topic name: 1 to 256 bytes
// from A-Z a-z 0-9 . _ : @ / -. It returns an *Error with code invalid_topic.
func ValidateTopic(name string) error {
	if len(name) == 0 || len(name) > MaxTopicLen {
		return &Error{Code: CodeInvalidTopic, Message: "topic name must be 1 to 256 bytes"}
	}
	for i := 0; i < len(name); i++ {
		if !topicByte[name[i]] {
			return &Error{Code: CodeInvalidTopic, Message: "topic name may only hold A-Z a-z 0-9 . _ : @ / -"}
		}
	}
	return nil
}

// Reserved reports whether name is one of the server's own topics: it
// starts with ReservedPrefix in any mix of case, so that "_LongPoll.x"
// cannot pass for another topic beside "_longpoll.x" in a store, a log
// or a grant that folds case.
func Reserved(name string) bool {
	if len(name) < len(ReservedPrefix) {
		return false
	}
	for i := 0; i < len(ReservedPrefix); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != ReservedPrefix[i] {
			return false
		}
	}
	return true
}

var topicByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._:@/-" {
		t[c] = true
	}
	return t
}()
