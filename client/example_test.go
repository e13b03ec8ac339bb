package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/client"
)

// exampleServer starts a longpoll server over a memory broker on
// 127.0.0.1 with a free port, and returns its URL and how to stop it.
func exampleServer() (url string, stop func()) {
	b := memory.New()
	srv, err := longpoll.New(b)
	if err != nil {
		log.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	return ts.URL, func() {
		srv.Shutdown(context.Background())
		ts.Close()
		b.Close()
	}
}

func ExampleClient_Publish() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	r, err := c.Publish(ctx, "chat.room1", map[string]string{"text": "hello"}, client.WithID("msg-1"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Topic, r.Seq, r.Duplicate)

	// Publishing the same ID again (say, after a crash) appends nothing.
	r, err = c.Publish(ctx, "chat.room1", map[string]string{"text": "hello"}, client.WithID("msg-1"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Topic, r.Seq, r.Duplicate)
	// Output:
	// chat.room1 1 false
	// chat.room1 1 true
}

func ExampleClient_Subscribe() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, text := range []string{"hi", "how are you?", "bye"} {
		if _, err := c.Publish(ctx, "chat.room1", text); err != nil {
			log.Fatal(err)
		}
	}

	received := 0
	for ev, err := range c.Subscribe(ctx, []string{"chat.room1"}, client.WithSince(client.Earliest)) {
		if err != nil {
			log.Fatal(err) // ctx.Err() once ctx ends; ErrClosed once c is closed
		}
		if ev.Gap != nil {
			fmt.Println("missed messages:", ev.Gap.Reason, ev.Gap.Missed)
			continue
		}
		fmt.Println(ev.Message.Seq, string(ev.Message.Data))
		if received++; received == 3 {
			break // or cancel ctx, from any goroutine
		}
	}
	// Output:
	// 1 "hi"
	// 2 "how are you?"
	// 3 "bye"
}

func ExampleWithCursorFile() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cursorFile := filepath.Join(dir, "chat.cursor")

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// run is one run of a program that prints what it has not seen yet.
	run := func(want int) {
		seen := 0
		for ev, err := range c.Subscribe(ctx, []string{"chat.room1"}, client.WithSince(client.Earliest), client.WithCursorFile(cursorFile)) {
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println(ev.Message.Seq, string(ev.Message.Data))
			if seen++; seen == want {
				break // the reply is all taken, so its cursor is saved
			}
		}
	}

	c.Publish(ctx, "chat.room1", "one")
	c.Publish(ctx, "chat.room1", "two")
	run(2)
	fmt.Println("-- restart --")
	c.Publish(ctx, "chat.room1", "three")
	run(1)
	// Output:
	// 1 "one"
	// 2 "two"
	// -- restart --
	// 3 "three"
}

func ExampleWithTransport() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	// Subscriptions hold one server-sent event stream instead of polling.
	c, err := client.New(url, client.WithTransport(client.SSE))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx, "news", "first"); err != nil {
		log.Fatal(err)
	}
	for ev, err := range c.Subscribe(ctx, []string{"news"}, client.WithSince(client.Earliest)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Message.Seq, string(ev.Message.Data))
		if ev.Message.Seq == 2 {
			break
		}
		// Comes as an event of the stream the loop holds.
		if _, err := c.Publish(ctx, "news", "second"); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// 1 "first"
	// 2 "second"
}
