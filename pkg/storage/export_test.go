package storage

import "sync/atomic"

// TraceStatements has p's connections from now on count the statements
// they send, for the tests of package storage_test, and returns the count.
func TraceStatements(p *Postgres) *atomic.Int64 {
	tr := &countingTracer{}
	p.cfg.Tracer = tr
	p.Close() // the next transaction connects with the tracer
	p.closed = false
	return &tr.n
}
