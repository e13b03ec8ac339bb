package memory_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

func Example() {
	b := memory.New(memory.WithMaxMessages(2))
	defer b.Close()
	ctx := context.Background()

	for _, data := range []string{`"a"`, `"b"`, `"c"`} {
		if _, err := b.Append(ctx, []longpoll.Publication{{Topic: "news", Data: json.RawMessage(data)}}); err != nil {
			panic(err)
		}
	}
	// A reader from the start learns that retention dropped one message.
	page, err := b.Read(ctx, "news", longpoll.Position{}, 10)
	if err != nil {
		panic(err)
	}
	fmt.Println(page.Gap.Reason, page.Gap.Missed)
	for _, m := range page.Messages {
		fmt.Println(m.Seq, string(m.Data))
	}
	// Output:
	// expired 1
	// 2 "b"
	// 3 "c"
}
