//go:build race

package multinode

// raceEnabled is true when the tests are built with -race: the fault
// tests, made to measure, skip then.
const raceEnabled = true
