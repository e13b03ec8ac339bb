// Package protocol is the vocabulary of longpoll's wire protocol
// (docs/protocol.md): messages, gaps, positions, the coded error and its
// codes, topic rules and limits, and the JSON shapes of the server's
// replies. The server, the brokers and the Go client share it.
//
// It is a leaf: it imports only the standard library, so a program that
// speaks the protocol (the client in package client, a tool, a test)
// links none of the server, its stores or their drivers.
//
// Cursors are opaque to clients: a cursor is the string a reply's
// "cursor" field carries, to be sent back unchanged. Its encoding belongs
// to the server; what a client may rely on is stated by the constants
// below and by docs/protocol.md.
package protocol
