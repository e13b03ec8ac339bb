package bolt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/bolt"
)

func Example() {
	dir, err := os.MkdirTemp("", "longpoll-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	b, err := bolt.Open(dir, bolt.WithMaxMessages(100))
	if err != nil {
		panic(err)
	}
	rs, err := b.Append(ctx, []longpoll.Publication{
		{Topic: "news", ID: "n-1", Data: json.RawMessage(`{"title":"hello"}`)},
	})
	if err != nil {
		panic(err)
	}
	pos := longpoll.Position{Epoch: rs[0].Epoch, Seq: rs[0].Seq}
	if err := b.Close(); err != nil {
		panic(err)
	}

	// After a restart the log goes on where it was.
	b, err = bolt.Open(dir, bolt.WithMaxMessages(100))
	if err != nil {
		panic(err)
	}
	defer b.Close()
	if _, err := b.Append(ctx, []longpoll.Publication{{Topic: "news", Data: json.RawMessage(`{"title":"again"}`)}}); err != nil {
		panic(err)
	}
	page, err := b.Read(ctx, "news", pos, 10)
	if err != nil {
		panic(err)
	}
	for _, m := range page.Messages {
		fmt.Println(m.Seq, string(m.Data), page.Gap == nil, page.Next.Epoch == pos.Epoch)
	}
	// Output:
	// 2 {"title":"again"} true true
}
