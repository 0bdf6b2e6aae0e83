//go:build race

package barrier

// raceEnabled thins out the slowest tests under the race detector.
const raceEnabled = true
