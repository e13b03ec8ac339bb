// Package jetstream is a longpoll.Broker that keeps every topic's log in a
// NATS JetStream stream, so that any number of longpoll nodes share it.
package jetstream
