package jetstream_test

import (
	"fmt"

	"github.com/longpoll/longpoll/broker/jetstream"
)

// A topic's subject token: '.' separates subject tokens, so it becomes
// '=', which no topic holds.
func ExampleEncodeTopic() {
	tok := jetstream.EncodeTopic("chat.room/42")
	topic, _ := jetstream.DecodeTopic(tok)
	fmt.Println(tok)
	fmt.Println(topic)
	// Output:
	// chat=room/42
	// chat.room/42
}

// ParseURL checks a store URL without connecting, and masks its password.
func ExampleParseURL() {
	redacted, err := jetstream.ParseURL("nats://app:s3cret@n1:4222,n2?replicas=3&stream=CHAT")
	fmt.Println(redacted, err)
	_, err = jetstream.ParseURL("nats://n1?replicas=7")
	fmt.Println(err)
	// Output:
	// nats://app:xxxxx@n1:4222,n2:4222?replicas=3&stream=CHAT <nil>
	// replicas="7": want 1 to 5
}
