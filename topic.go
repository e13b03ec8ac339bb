package longpoll

import "github.com/longpoll/longpoll/protocol"

// MaxTopicLen is the longest topic name, in bytes.
const MaxTopicLen = protocol.MaxTopicLen

// ReservedPrefix starts the names of the server's own topics, in any
// case: clients may not publish to them, and only an admin may read them.
const ReservedPrefix = protocol.ReservedPrefix

// ValidateTopic reports whether name is a valid topic name: 1 to 256 bytes
// from A-Z a-z 0-9 . _ : @ / -. It returns an *Error with code invalid_topic.
func ValidateTopic(name string) error { return protocol.ValidateTopic(name) }

// Reserved reports whether name is one of the server's own topics: it
// starts with ReservedPrefix in any mix of case.
func Reserved(name string) bool { return protocol.Reserved(name) }
