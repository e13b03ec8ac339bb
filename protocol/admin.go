package protocol

import "time"

// The admin API's JSON shapes (docs/protocol.md, "Admin API"). Times are
// RFC 3339 in UTC.

// Admin API limits.
const (
	// DefaultTopicsLimit is the page size of GET /v1/admin/topics without
	// a limit parameter.
	DefaultTopicsLimit = 100
	// MaxTopicsLimit is the largest page GET /v1/admin/topics gives.
	MaxTopicsLimit = 1000
)

// AdminTopic is one topic of GET /v1/admin/topics.
type AdminTopic struct {
	Topic  string `json:"topic"`
	Head   uint64 `json:"head"`
	Oldest uint64 `json:"oldest"`
	// Waiting is the number of polls held on the topic on the node that
	// answered.
	Waiting  int    `json:"waiting"`
	Retained uint64 `json:"retained"`
	Bytes    uint64 `json:"bytes"`
	// LastPublish is absent when no message is retained.
	LastPublish *time.Time `json:"last_publish,omitempty"`
}

// AdminTopics is the reply of GET /v1/admin/topics. Next, when present,
// is the after parameter of the next page.
type AdminTopics struct {
	Topics []AdminTopic `json:"topics"`
	Next   string       `json:"next,omitempty"`
}

// AdminTopicDeleted is the reply of DELETE /v1/admin/topics/{topic}.
type AdminTopicDeleted struct {
	Topic   string `json:"topic"`
	Deleted bool   `json:"deleted"`
}

// AdminDisconnect is the body of POST /v1/admin/disconnect and its reply;
// the reply always carries Before.
type AdminDisconnect struct {
	Sub    string     `json:"sub"`
	Before *time.Time `json:"before,omitempty"`
}

// AdminDrain is the reply of POST and DELETE /v1/admin/drain.
type AdminDrain struct {
	Draining bool `json:"draining"`
}

// AdminStore describes the store in GET /v1/admin/node.
type AdminStore struct {
	Kind  string `json:"kind"`
	Ready bool   `json:"ready"`
}

// AdminNode is the reply of GET /v1/admin/node, and each entry of its
// Nodes (which are the other live nodes sharing the store; their own
// Nodes is absent).
type AdminNode struct {
	Node    string    `json:"node"`
	Version string    `json:"version"`
	Commit  string    `json:"commit"`
	Built   string    `json:"built"`
	Go      string    `json:"go"`
	Started time.Time `json:"started"`
	// Seen is when the store last heard from the node (other nodes only).
	Seen         *time.Time  `json:"seen,omitempty"`
	Store        AdminStore  `json:"store"`
	Ready        bool        `json:"ready"`
	PollsHeld    int64       `json:"polls_held"`
	TopicsWaited int         `json:"topics_waited"`
	ConfigDigest string      `json:"config_digest"`
	Draining     bool        `json:"draining"`
	Nodes        []AdminNode `json:"nodes,omitempty"`
}
