// Package core is lessor's request pipeline: every command becomes one
// logical.Request that goes through Handle, in this order: token lookup,
// routing by the longest mount prefix, ACL check (with sudo for the
// root-protected paths), audit of the request, the backend (which records
// the leases of what it issues, pending, before issuing), audit of the
// response. The pending leases are activated later, by whoever meets them
// next (see lease.Manager.Adopt).
//
// The core owns the mount table (core/mounts), the policies
// (sys/policy/<name>), the audit configuration (core/audit) and wires the
// token store (sys/token/) and the lease manager (sys/lease/) to the
// backends. Each backend gets its own prefix of the sealed store,
// logical/<mount uuid>/.
package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/lessorhq/lessor/pkg/audit"
	"github.com/lessorhq/lessor/pkg/lease"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/policy"
	"github.com/lessorhq/lessor/pkg/storage"
	"github.com/lessorhq/lessor/pkg/token"
)

// SystemDefaultTTL and SystemMaxTTL are the system-wide lease TTLs, as in
// Vault (768h = 32 days).
const (
	SystemDefaultTTL = 768 * time.Hour
	SystemMaxTTL     = 768 * time.Hour
)

// Factory builds the backend for one mount type.
type Factory func() logical.Backend

// Config wires a Core.
type Config struct {
	// Store is the sealed (barrier) store.
	Store   storage.Store
	StoreID string
	// StoreLogin is the PostgreSQL login the store connects as, "" for a
	// file store (logical.StoreLoginView).
	StoreLogin string
	// Factories maps mount types ("database") to their backends.
	Factories  map[string]Factory
	Now        func() time.Time
	Rand       io.Reader
	RemoteUser string
	// EndReads, if set, is called before a backend handles a request:
	// the caller may have the store keep what its reads opened (see
	// storage.Bolt.Hold), and a backend may wait on the network.
	EndReads func()
	// Served is set by `lessor serve`: its callers are not the account it
	// runs as, and may not enable audit devices (see enableAudit).
	Served bool
}

// Core runs requests.
type Core struct {
	store      storage.Store
	storeID    string
	storeLogin string
	factories  map[string]Factory
	now        func() time.Time
	rand       io.Reader
	user       string
	endReads   func()
	served     bool

	tokens *token.Store
	leases *lease.Manager
	sys    *systemBackend

	mu       sync.Mutex
	backends map[string]logical.Backend // by mount uuid
	// broker is the audit broker of brokerCfg, the audit configuration
	// the last request read. Every request reads the configuration again:
	// the CLI or another server on the same store may have changed it.
	broker    *audit.Broker
	brokerCfg auditConfig
}

// tokenStoragePrefix is the token store's part of the sealed store.
const tokenStoragePrefix = "sys/token/"

// New returns a Core over an unsealed store.
func New(cfg Config) *Core {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	c := &Core{
		store: cfg.Store, storeID: cfg.StoreID, storeLogin: cfg.StoreLogin, factories: cfg.Factories,
		now: cfg.Now, rand: cfg.Rand, user: cfg.RemoteUser, endReads: cfg.EndReads, served: cfg.Served,
		backends: map[string]logical.Backend{},
	}
	c.leases = lease.New(cfg.Store, c.resolveLeaseMount, lease.Options{Now: cfg.Now, Rand: cfg.Rand})
	c.tokens = token.New(storage.Prefixed(cfg.Store, tokenStoragePrefix), token.Options{
		Now: cfg.Now, Rand: cfg.Rand,
		DefaultTTL: SystemDefaultTTL, MaxTTL: SystemMaxTTL,
		PolicyExists: c.policyExists,
		OnRevoke:     c.leases.RevokeByToken,
	})
	c.sys = &systemBackend{c: c}
	return c
}

// Leases returns the lease manager.
func (c *Core) Leases() *lease.Manager { return c.leases }

// Tokens returns the token store.
func (c *Core) Tokens() *token.Store { return c.tokens }

// StoreID returns the store's id.
func (c *Core) StoreID() string { return c.storeID }

// Initialize writes what a new store needs (the audit HMAC key) and creates
// the root token, which it returns; it is shown once and never stored.
func (c *Core) Initialize(ctx context.Context) (string, error) {
	key := make([]byte, 32)
	if _, err := io.ReadFull(c.rand, key); err != nil {
		return "", fmt.Errorf("generate audit key: %w", err)
	}
	if err := c.store.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Put(auditKeyPath, key); err != nil {
			return err
		}
		return saveMounts(tx, nil)
	}); err != nil {
		return "", err
	}
	tok, _, err := c.tokens.CreateRoot(ctx)
	return tok, err
}

// PermissionError is a denied request; it names the operation and path.
type PermissionError struct {
	Operation logical.Operation
	Path      string
	Reason    string
	// Cause is why, when it is more than the ACL's no: token.ErrBadToken
	// for a missing, invalid or expired token, which the CLI answers with
	// a different hint than a policy that says no.
	Cause error
}

func (e *PermissionError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("permission denied: %s", e.Reason)
	}
	return "permission denied"
}

// Unwrap makes errors.Is(err, logical.ErrPermissionDenied) true, and
// errors.Is(err, Cause).
func (e *PermissionError) Unwrap() []error {
	if e.Cause == nil {
		return []error{logical.ErrPermissionDenied}
	}
	return []error{logical.ErrPermissionDenied, e.Cause}
}

// sudoPrefixes are root-protected: the ACL must grant sudo as well as the
// operation's capability (Vault's list, as far as lessor has the paths).
var sudoPrefixes = []string{
	"sys/leases/revoke-prefix/", "sys/leases/revoke-force/", "sys/leases/lookup/", "sys/leases/entries",
	"sys/audit", "sys/remount", "sys/raw",
}

func needsSudo(path string, op logical.Operation) bool {
	if path == "sys/leases" {
		// Listing the irrevocable leases, as in Vault; their count is not.
		return true
	}
	if path == "sys/leases/lookup" || strings.HasPrefix(path, "sys/leases/lookup/") {
		return op == logical.ListOperation
	}
	for _, p := range sudoPrefixes {
		if strings.HasPrefix(path+"/", p) || strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func (c *Core) requestID() string {
	b := make([]byte, 16)
	if _, err := io.ReadFull(c.rand, b); err != nil {
		return ""
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Handle runs one request through the pipeline.
func (c *Core) Handle(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	// The path and keys are made canonical, or refused, once, here: the
	// ACL below and the backend after it see the same strings.
	p, err := logical.CanonicalPath(req.Path, req.Operation == logical.ListOperation)
	if err != nil {
		return nil, err
	}
	req.Path = p
	if err := logical.CheckKeys(req.Data); err != nil {
		return nil, err
	}
	if req.ID == "" {
		req.ID = c.requestID()
	}
	fullPath := req.Path

	pre, err := c.prefetch(ctx, req.ClientToken, fullPath)
	if err != nil {
		if errors.Is(err, token.ErrBadToken) {
			return c.denyBadToken(ctx, req, fullPath)
		}
		return nil, err
	}
	te, acl := pre.token, pre.acl
	be, mount, rel, err := c.route(fullPath, pre.mounts)
	if err != nil {
		var nm *notMountedError
		if errors.As(err, &nm) && !mayKnowMounts(acl, req.Operation, fullPath, req.Data) {
			// As in Vault, the ACL comes before routing for a caller that
			// may not list the mounts: it must not learn what is mounted.
			err = &PermissionError{Operation: req.Operation, Path: fullPath}
		}
		return c.failBeforeACL(ctx, pre, req, te, err)
	}

	req.DisplayName = te.DisplayName
	req.TokenAccessor = te.Accessor
	req.TokenPolicies = te.Policies
	req.IsRoot = containsString(te.Policies, "root")
	req.MountPoint = mount.Path
	req.MountType = mount.Type
	req.MountAccessor = mount.Accessor
	req.System = c.systemView(mount)
	req.Storage = c.mountStorage(mount)

	// A backend that reads a value in another shape than it was sent
	// ("apps,ops" as two policies) first puts it in that shape, so the
	// ACL below judges what the backend will act on.
	if dc, ok := be.(logical.DataCanonicalizer); ok && len(req.Data) > 0 {
		inner := *req
		inner.Path = rel
		inner.Data = maps.Clone(req.Data)
		if err := dc.CanonicalData(&inner); err != nil {
			return c.failBeforeACL(ctx, pre, req, te, err)
		}
		req.Data = inner.Data
	}

	aclOp := req.Operation
	if aclOp == logical.CreateOperation || aclOp == logical.UpdateOperation {
		inner := *req
		inner.Path = rel
		ok, exists, err := be.ExistenceCheck(ctx, &inner)
		if err != nil {
			return c.failBeforeACL(ctx, pre, req, te, err)
		}
		if ok && !exists {
			aclOp = logical.CreateOperation
		} else {
			aclOp = logical.UpdateOperation
		}
		req.Operation = aclOp
	}

	broker, err := c.prefetchedBroker(pre)
	if err != nil {
		return nil, err
	}
	ae := &audit.Entry{
		RequestID: req.ID, Operation: string(aclOp), Path: fullPath, MountType: mount.Type,
		ClientToken: req.ClientToken, Accessor: te.Accessor, DisplayName: te.DisplayName,
		Policies: te.Policies, RemoteUser: c.user, RemoteAddress: req.RemoteAddress, Data: req.Data,
	}
	// A denied request is audited too: who tried what is the point.
	deny := func(err error) (*logical.Response, error) {
		ae.Err, ae.Refused = err, true
		if aerr := broker.LogResponse(ctx, ae); aerr != nil {
			return nil, fmt.Errorf("audit: %w", aerr)
		}
		return nil, err
	}
	res := acl.Allow(aclOp, fullPath, req.Data)
	if aclOp == logical.HelpOperation {
		res.Allowed = helpAllowed(acl, fullPath)
	}
	if !res.Allowed {
		return deny(&PermissionError{Operation: aclOp, Path: fullPath})
	}
	req.HasSudo = res.Sudo || req.IsRoot
	if needsSudo(fullPath, aclOp) && !req.HasSudo {
		return deny(&PermissionError{Operation: aclOp, Path: fullPath, Reason: "this path also needs the sudo capability"})
	}
	if err := c.checkLeaseTarget(ctx, acl, te, aclOp, fullPath, req.Data); err != nil {
		return deny(err)
	}
	if aclOp == logical.HelpOperation {
		// Help describes the path and does nothing: it is audited, but
		// spends none of the token's uses.
		req.Path = rel
		resp, herr := logical.Help(be, req)
		req.Path = fullPath
		ae.Response, ae.Err = resp, herr
		if err := broker.LogResponse(ctx, ae); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		return resp, herr
	}
	if err := c.tokens.Use(ctx, te); err != nil {
		return deny(err)
	}
	if te.NumUses < 0 {
		// That was the token's last use: revoke it (and what it created
		// in this very request) once the request is done. A reap may have
		// finished the revocation meanwhile (the token was due), before
		// this request recorded its lease: the leases recorded under the
		// accessor are revoked whether or not the token is still there.
		defer func() {
			rctx := context.WithoutCancel(ctx)
			_ = c.tokens.Revoke(rctx, te)
			_ = c.leases.RevokeByToken(rctx, []string{te.Accessor})
		}()
	}
	if err := broker.LogRequest(ctx, ae); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}

	lastUse := te.NumUses < 0
	data := req.Data
	checkKeys := append(policyKeys(te.Policies), mountsKey, tokenStoragePrefix+token.EntryKey(te.ID))
	rec := c.leases.Recorder(mount.UUID, mount.Path, te.Accessor, req.System).WithCheck(checkKeys, func(tx storage.Tx) error {
		// Since the request was authorised, its token may have been
		// revoked (the revocation has selected the token's leases
		// already, so a lease recorded now would outlive it), or its
		// mount moved (the lease's id would name a path the mount no
		// longer has). Either way nothing is recorded, and the backend
		// creates nothing. What the checks read (checkKeys) comes in one
		// query with the record's own keys, where a read is a round trip.
		if err := c.tokens.StillUsableTx(storage.PrefixedTx(tx, tokenStoragePrefix), te, lastUse); err != nil {
			if errors.Is(err, token.ErrBadToken) {
				return badTokenError(req.Operation, fullPath)
			}
			return err
		}
		// Nor may its policies have stopped granting the request: an
		// operator who narrows a policy and then revokes the prefix it
		// granted would miss a lease recorded after that revocation.
		if err := stillAllowedTx(tx, pre, aclOp, fullPath, data); err != nil {
			return err
		}
		ms, err := loadMounts(tx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.UUID == mount.UUID && m.Path == mount.Path {
				return nil
			}
		}
		return logical.Errorf("the mount at %s was moved or disabled while the request ran; nothing was issued", mount.Path)
	}).WithMountStorage(mountStoragePrefix(mount))
	req.Leases = rec
	req.Path = rel
	if c.endReads != nil {
		if rh, ok := be.(logical.ReadsHolder); ok && rh.HoldsReads(req) {
			req.EndReads = c.endReads
		} else {
			c.endReads()
		}
	}
	resp, herr := be.HandleRequest(ctx, req)
	req.EndReads = nil
	if c.endReads != nil {
		c.endReads()
	}
	req.Path = fullPath
	// The leases the backend recorded stay pending: their secrets exist
	// (the backend created them after recording the leases), and a
	// pending lease whose secret exists is adopted as active by the next
	// command that meets it, or by reap (lease.Manager.Adopt). Activating
	// here would be a second durable commit on every issue, before the
	// credential could be handed out.
	ae.Response, ae.Err = resp, herr
	if err := broker.LogResponse(ctx, ae); err != nil && herr == nil {
		// The secret must not be handed out unaudited, and then nobody
		// holds it: its lease is revoked now, where the pending record
		// would be adopted and the credential live out its TTL. A
		// revocation that fails is recorded for reap to retry, or, if it
		// never began, the lease is made due for the next reap.
		rctx := context.WithoutCancel(ctx)
		for _, id := range rec.Prepared() {
			if c.leases.Revoke(rctx, id) != nil {
				_ = rec.Abandon(rctx, id)
			}
		}
		// So is a token the request created: nobody got it, and it would
		// stay valid until its TTL, or for ever. A renewal's token was
		// the caller's before and stays.
		if mount == tokenMount && resp != nil && resp.Auth != nil && createsToken(rel) {
			if ne, lerr := c.tokens.Lookup(rctx, resp.Auth.ClientToken); lerr == nil {
				_ = c.tokens.Revoke(rctx, ne)
			}
		}
		return nil, fmt.Errorf("audit: %w", err)
	}
	return resp, herr
}

// createsToken tells whether rel, a path under auth/token/, creates a token.
func createsToken(rel string) bool {
	rel = strings.Trim(rel, "/")
	return rel == "create" || rel == "create-orphan"
}

// badTokenError is the refusal of a request whose token is missing,
// unknown, expired or used up.
func badTokenError(op logical.Operation, path string) error {
	return &PermissionError{Operation: op, Path: path, Reason: "missing, invalid or expired token", Cause: errors.Join(token.ErrBadToken, token.ErrCallerToken)}
}

// CheckToken is the first step of Handle alone: nil when req's token is
// usable, else the error Handle would return for it, audited as Handle
// audits it (with req's remote address, and without its data, which the
// caller has not read). It lets a server refuse a caller without a token
// before it reads and parses what the caller sent. It grants nothing:
// Handle looks the token up again and asks the ACL.
func (c *Core) CheckToken(ctx context.Context, req *logical.Request) error {
	_, err := c.tokens.Lookup(ctx, req.ClientToken)
	if err == nil || !errors.Is(err, token.ErrBadToken) {
		return err
	}
	path := req.Path
	if p, perr := logical.CanonicalPath(req.Path, req.Operation == logical.ListOperation); perr == nil {
		path = p
	}
	if req.ID == "" {
		req.ID = c.requestID()
	}
	_, err = c.denyBadToken(ctx, req, path)
	return err
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// prefetched is what Handle reads from the store before the backend runs.
// It is read in one transaction because each transaction opens and locks
// the store file again, which a command pays for before its real work.
type prefetched struct {
	token *token.Entry
	acl   *policy.ACL
	// policies are the stored records of the token's policies acl was
	// built from (nil for one not stored), by policyKeys.
	policies [][]byte
	mounts   []*MountEntry // only for a path that is not a built-in mount
	// audit is the audit configuration as stored; an error decoding it
	// waits until Handle needs its broker, after routing and the
	// existence check.
	audit auditConfig
}

// prefetch reads, in one read transaction and in the order Handle needs
// them, the caller's token entry, its policies, the mount table (if the
// path needs it) and the audit configuration.
func (c *Core) prefetch(ctx context.Context, tok, fullPath string) (*prefetched, error) {
	pre := &prefetched{}
	err := c.store.View(ctx, func(tx storage.Tx) error {
		// What does not depend on the token is read in one query, where
		// a read is a round trip (the PostgreSQL store): the salt, the
		// mount table, the audit configuration.
		ahead := []string{tokenStoragePrefix + token.SaltKey}
		if !builtinMount(fullPath) {
			ahead = append(ahead, mountsKey)
		}
		ahead = append(ahead, auditKeyPath, auditDevicesPath)
		if err := storage.Prefetch(tx, ahead); err != nil {
			return err
		}
		var err error
		if pre.token, err = c.tokens.LookupTx(storage.PrefixedTx(tx, tokenStoragePrefix), tok); err != nil {
			return err
		}
		// The records are read in one query, and kept: a request that
		// records a lease checks they did not change meanwhile.
		if pre.policies, err = storage.GetMany(tx, policyKeys(pre.token.Policies)); err != nil {
			return err
		}
		if pre.acl, err = aclForTx(tx, pre.token.Policies); err != nil {
			return err
		}
		if !builtinMount(fullPath) {
			if pre.mounts, err = loadMounts(tx); err != nil {
				return err
			}
		}
		pre.audit, err = readAuditConfig(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return pre, nil
}

// denyBadToken refuses a request whose token is missing, unknown, expired
// or used up, and audits it first, as Vault does: who tried what with a
// token that does not work is what an audit log is for. Only the token's
// HMAC is written, as for any request.
func (c *Core) denyBadToken(ctx context.Context, req *logical.Request, fullPath string) (*logical.Response, error) {
	derr := badTokenError(req.Operation, fullPath)
	broker, err := c.auditBroker(ctx)
	if err != nil {
		return nil, err
	}
	ae := &audit.Entry{
		RequestID: req.ID, Operation: string(req.Operation), Path: fullPath, ClientToken: req.ClientToken,
		RemoteUser: c.user, RemoteAddress: req.RemoteAddress, Data: req.Data, Err: derr, Refused: true,
	}
	if err := broker.LogResponse(ctx, ae); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return nil, derr
}

// builtinMount tells whether p is served by sys/ or auth/token/, which
// are not in the mount table.
func builtinMount(p string) bool {
	return p == "sys" || strings.HasPrefix(p, "sys/") || p == "auth/token" || strings.HasPrefix(p, "auth/token/")
}

// route finds the backend for a full path and the path below its mount;
// ms is the mount table, which built-in mounts do not need.
func (c *Core) route(p string, ms []*MountEntry) (logical.Backend, *MountEntry, string, error) {
	switch {
	case p == "sys" || strings.HasPrefix(p, "sys/"):
		return c.sys, sysMount, strings.TrimPrefix(strings.TrimPrefix(p, "sys"), "/"), nil
	case p == "auth/token" || strings.HasPrefix(p, "auth/token/"):
		return c.tokens.Backend(), tokenMount, strings.TrimPrefix(strings.TrimPrefix(p, "auth/token"), "/"), nil
	}
	m := findMount(ms, strings.TrimSuffix(p, "/"))
	if m == nil {
		return nil, nil, "", newNotMountedError(p)
	}
	be, err := c.backend(m)
	if err != nil {
		return nil, nil, "", err
	}
	// The path below the mount keeps a list's trailing slash.
	rel := strings.TrimPrefix(p, m.Path)
	if !strings.HasSuffix(p, "/") {
		rel = strings.TrimSuffix(strings.TrimPrefix(p+"/", m.Path), "/")
	}
	return be, m, rel, nil
}

// notMountedError is a path under no mount. Only a caller that may know
// the mounts sees it (mayKnowMounts); others are denied.
type notMountedError struct{ coded *logical.CodedError }

func newNotMountedError(p string) *notMountedError {
	// The path may hold a token a client put there: the message masks
	// it, as logical.UnsupportedPath's does.
	return &notMountedError{&logical.CodedError{Status: 404, Msg: fmt.Sprintf("no secrets engine is mounted at %q (see `lessor secrets list`)", logical.MaskTokens(p))}}
}

func (e *notMountedError) Error() string { return e.coded.Msg }

// Unwrap gives the error its HTTP-like status.
func (e *notMountedError) Unwrap() error { return e.coded }

// mayKnowMounts tells whether a caller may learn that nothing is mounted
// at path: a root token, a token whose ACL allows the operation there (it
// would be told anyway once something is mounted), or one that may read
// sys/mounts and so list them all.
func mayKnowMounts(acl *policy.ACL, op logical.Operation, path string, data map[string]any) bool {
	if acl.IsRoot() || acl.Allow(logical.ReadOperation, "sys/mounts", nil).Allowed {
		return true
	}
	if op == logical.HelpOperation {
		return helpAllowed(acl, path)
	}
	if op == logical.CreateOperation || op == logical.UpdateOperation {
		return acl.Allow(logical.CreateOperation, path, data).Allowed || acl.Allow(logical.UpdateOperation, path, data).Allowed
	}
	return acl.Allow(op, path, data).Allowed
}

// helpAllowed tells whether a token may read a path's help: Vault's rule
// that help is a request to the path like any other, so a token that may do
// something there (any operation) may learn how, and one that may do
// nothing there learns nothing, not even whether a mount is there.
func helpAllowed(acl *policy.ACL, path string) bool {
	for _, op := range []logical.Operation{logical.ReadOperation, logical.ListOperation, logical.CreateOperation, logical.UpdateOperation, logical.DeleteOperation} {
		if acl.Allow(op, path, nil).Allowed {
			return true
		}
	}
	return false
}

// failBeforeACL audits and returns the error of a request that failed
// before the ACL judged it (no mount at its path, or data its backend
// could not read): who tried what is logged, whatever went wrong.
func (c *Core) failBeforeACL(ctx context.Context, pre *prefetched, req *logical.Request, te *token.Entry, err error) (*logical.Response, error) {
	broker, berr := c.prefetchedBroker(pre)
	if berr != nil {
		return nil, berr
	}
	ae := &audit.Entry{
		RequestID: req.ID, Operation: string(req.Operation), Path: req.Path,
		ClientToken: req.ClientToken, Accessor: te.Accessor, DisplayName: te.DisplayName,
		Policies: te.Policies, RemoteUser: c.user, RemoteAddress: req.RemoteAddress, Data: req.Data, Err: err,
		Refused: true,
	}
	if aerr := broker.LogResponse(ctx, ae); aerr != nil {
		return nil, fmt.Errorf("audit: %w", aerr)
	}
	return nil, err
}

var (
	sysMount   = &MountEntry{Path: "sys/", Type: "system", UUID: "system", Accessor: "system"}
	tokenMount = &MountEntry{Path: "auth/token/", Type: "token", UUID: "token", Accessor: "auth_token"}
)

func (c *Core) backend(m *MountEntry) (logical.Backend, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if be, ok := c.backends[m.UUID]; ok {
		return be, nil
	}
	f, ok := c.factories[m.Type]
	if !ok {
		return nil, fmt.Errorf("mount %s has unknown type %q", m.Path, m.Type)
	}
	be := f()
	c.backends[m.UUID] = be
	return be, nil
}

// eachBackend calls fn, in order, for each mount of ms whose backend is a
// T (a Rotator, an OrphanReaper…), and stops at its first error.
func eachBackend[T any](c *Core, ms []*MountEntry, fn func(m *MountEntry, be T) error) error {
	for _, m := range ms {
		be, err := c.backend(m)
		if err != nil {
			return err
		}
		if t, ok := be.(T); ok {
			if err := fn(m, t); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Core) mountStorage(m *MountEntry) storage.Store {
	return storage.Prefixed(c.store, mountStoragePrefix(m))
}

// mountStoragePrefix is where m's backend keeps its storage in the store.
func mountStoragePrefix(m *MountEntry) string { return "logical/" + m.UUID + "/" }

// resolveLeaseMount gives the lease manager what it needs to renew or
// revoke a lease of the mount with this uuid.
func (c *Core) resolveLeaseMount(ctx context.Context, uuid string) (*lease.Mount, error) {
	m, err := c.mountByUUID(ctx, uuid)
	if err != nil {
		return nil, err
	}
	be, err := c.backend(m)
	if err != nil {
		return nil, err
	}
	sb, ok := be.(logical.SecretBackend)
	if !ok {
		return nil, fmt.Errorf("mount %s (%s) does not issue leases", m.Path, m.Type)
	}
	return &lease.Mount{Backend: sb, MountPoint: m.Path, Storage: c.mountStorage(m), System: c.systemView(m)}, nil
}

// systemView is what a backend of one mount may ask of the system.
type systemView struct {
	c       *Core
	m       *MountEntry
	storeID string
	now     func() time.Time
}

func (c *Core) systemView(m *MountEntry) logical.SystemView {
	return &systemView{c: c, m: m, storeID: c.storeID, now: c.now}
}

func (s *systemView) DefaultLeaseTTL() time.Duration {
	if s.m.Config.DefaultLeaseTTL > 0 {
		return s.m.Config.DefaultLeaseTTL
	}
	return SystemDefaultTTL
}

func (s *systemView) MaxLeaseTTL() time.Duration {
	if s.m.Config.MaxLeaseTTL > 0 {
		return s.m.Config.MaxLeaseTTL
	}
	return SystemMaxTTL
}

// SiblingMounts lists the other mounts of this mount's type, with their
// storage views (logical.SiblingMounts).
func (s *systemView) SiblingMounts(ctx context.Context) ([]logical.Sibling, error) {
	ms, err := s.c.mounts(ctx)
	if err != nil {
		return nil, err
	}
	var out []logical.Sibling
	for _, m := range ms {
		if m.UUID != s.m.UUID && m.Type == s.m.Type {
			out = append(out, logical.Sibling{Path: m.Path, Storage: s.c.mountStorage(m)})
		}
	}
	return out, nil
}

func (s *systemView) StoreID() string { return s.storeID }
func (s *systemView) Now() time.Time  { return s.now() }

// StoreLogin is the PostgreSQL login of the store (logical.StoreLoginView).
func (s *systemView) StoreLogin() string { return s.c.storeLogin }

// Counts reports how much the store holds, for `operator status`.
type Counts struct {
	Mounts, Policies, Tokens, Leases int
}

// Count returns the store's counts.
func (c *Core) Count(ctx context.Context) (Counts, error) {
	var n Counts
	ms, err := c.mounts(ctx)
	if err != nil {
		return n, err
	}
	n.Mounts = len(ms)
	names, err := c.policyNames(ctx)
	if err != nil {
		return n, err
	}
	n.Policies = len(names)
	if n.Tokens, err = c.tokens.Count(ctx); err != nil {
		return n, err
	}
	n.Leases, err = c.leases.Count(ctx)
	return n, err
}

// ReapResult is what a reap did to leases and tokens.
type ReapResult struct {
	*lease.ReapSummary
	TokensRevoked int `json:"tokens_revoked"`
	// Rotated and RotationsFailed count the static-role rotations of this
	// run; RotationsDue lists the due ones in a dry run.
	Rotated         int               `json:"rotated"`
	RotationsFailed int               `json:"rotations_failed"`
	RotationsDue    []DueRotation     `json:"rotations_due,omitempty"`
	RotationErrors  []RotationFailure `json:"rotation_errors,omitempty"`
}

// Reap revokes expired tokens (and with them their leases), then every due
// lease, then rotates every static role that is due.
func (c *Core) Reap(ctx context.Context, o lease.ReapOptions) (*ReapResult, error) {
	res := &ReapResult{}
	if !o.DryRun {
		n, err := c.tokens.RevokeExpired(ctx)
		res.TokensRevoked = n
		if err != nil {
			var re *lease.RevokeError
			if !errors.As(err, &re) {
				return res, err
			}
		}
	}
	sum, err := c.leases.Reap(ctx, o)
	res.ReapSummary = sum
	if err != nil {
		return res, err
	}
	return res, c.rotateDue(ctx, o, res)
}
