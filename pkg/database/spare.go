package database

import (
	"crypto/rand"
	"sync/atomic"
	"time"

	"github.com/lessorhq/lessor/pkg/database/postgres"
)

// A server keeps a few passwords of the default generator ready, each with
// its SCRAM verifier, made in the background once an issue has its
// credential: the verifier's 4,096 rounds of PBKDF2 (1.3 ms here) were
// the first thing on the path of a warm issue, before BEGIN could be
// followed by CREATE ROLE.
// A spare is handed out once and dropped unused after spareMaxAge. Under a
// steady load there is no idle moment and the spares run out: the work is
// the same, done inline. The command line keeps none (no pool, no server).
const (
	spareCount  = 2
	spareMaxAge = 10 * time.Minute
)

type spare struct {
	password, verifier string
	made               time.Time
}

type spares struct {
	ch      chan spare
	filling atomic.Bool
}

func newSpares() *spares { return &spares{ch: make(chan spare, spareCount)} }

// take returns a spare made less than spareMaxAge ago, if there is one.
func (s *spares) take() (spare, bool) {
	for {
		select {
		case sp := <-s.ch:
			if time.Since(sp.made) <= spareMaxAge {
				return sp, true
			}
		default:
			return spare{}, false
		}
	}
}

// refill makes spares in the background until there are spareCount, with
// gen making each password; one refill runs at a time.
func (s *spares) refill(gen func() (string, error)) {
	if !s.filling.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.filling.Store(false)
		for len(s.ch) < cap(s.ch) {
			pw, err := gen()
			if err != nil {
				return
			}
			v, err := postgres.ScramVerifier(pw, rand.Reader)
			if err != nil {
				return
			}
			select {
			case s.ch <- spare{password: pw, verifier: v, made: time.Now()}:
			default:
				return
			}
		}
	}()
}

// spareFor tells whether an issue with cfg may use a spare: a server's
// (pooled) backend, the default generator, and a SCRAM verifier.
func (b *Backend) spareFor(cfg *dbConfig, pc postgres.Config) bool {
	return b.spares != nil && cfg.PasswordPolicy == "" && pc.SCRAM()
}
