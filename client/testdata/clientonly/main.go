// Command clientonly is a program that uses only package client: the
// footprint test builds it and checks that no server code is linked.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/longpoll/longpoll/client"
)

func main() {
	c, err := client.New("http://127.0.0.1:1")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	for ev, err := range c.Subscribe(context.Background(), []string{"news"}) {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(ev.Message)
	}
}
