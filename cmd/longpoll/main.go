// Command longpoll is the long-polling messaging server and its tools.
//
//	longpoll serve      run the server
//	longpoll version    print version and build information
//
// Run "longpoll help" for the full list.
package main

import (
	"os"

	"github.com/longpoll/longpoll/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
