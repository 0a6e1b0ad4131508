// Command streamer runs Streamer on one machine and talks to it, with this
// repository's plugins (the demo and report plugins; package plugins).
//
//	streamer new DIR --module M       make a project of your own
//	streamer dev                      run the whole stack locally
//	streamer token --sub alice        mint a dev token
//	streamer call ACTION [JSON]       send a request and wait for its result
//	streamer status ID                print a request's status
//	streamer cancel ID                cancel a request
//	streamer actions                  list the actions the server serves
//	streamer package                  build the Lambdas into dist/<function>.zip
//	streamer load                     measure a server with closed-loop load
//
// Run "streamer help" or "streamer COMMAND -h" for details. A project made
// with `streamer new` has the same commands, serving its own plugins: its
// main.go is the line below with its own plugin list.
package main

import (
	"github.com/streamer-go/streamer/cli"
	"github.com/streamer-go/streamer/plugins"
)

func main() { cli.Main(plugins.All) }
