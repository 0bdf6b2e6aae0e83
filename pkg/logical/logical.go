// Package logical defines the request and response that every lessor
// command becomes, and the interfaces that backends (the system backend,
// the token store, the database secrets engine) implement.
//
// A backend sees only the part of the path below its mount, a storage view
// confined to its own prefix, and the system view (which may show it the
// other mounts of its type, to read, see SiblingMounts). It never imports
// pkg/core or cmd, never prints, and never exits.
package logical

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lessorhq/lessor/pkg/storage"
)

// Operation is what a request does to its path. The ACL check maps each
// operation onto the capability of the same name.
type Operation string

// The operations a request can carry.
const (
	ReadOperation   Operation = "read"
	CreateOperation Operation = "create"
	UpdateOperation Operation = "update"
	DeleteOperation Operation = "delete"
	ListOperation   Operation = "list"
)

// Request is one command on its way through the pipeline.
type Request struct {
	// ID identifies the request in the audit log and the JSON envelope;
	// the core fills it in when empty.
	ID        string
	Operation Operation
	// Path is the full path as given ("database/creds/readonly") when the
	// request enters the core; the core rewrites it to the part below the
	// mount ("creds/readonly") before the backend sees it.
	Path string
	Data map[string]any
	// ClientToken is the caller's token. It is never logged or audited in
	// clear.
	ClientToken string
	// RemoteAddress is the network address of the caller of an HTTP API
	// request (host, without the port), for the audit log; "" for a
	// command run locally.
	RemoteAddress string

	// The fields below are set by the core.

	// MountPoint is the mount the request was routed to, with its trailing
	// slash ("database/").
	MountPoint    string
	MountType     string
	MountAccessor string
	// Storage is the mount's own sealed view; backends run their own short
	// transactions on it and never hold one across network I/O.
	Storage storage.Store
	// DisplayName and TokenAccessor identify the caller (never the token).
	DisplayName   string
	TokenAccessor string
	TokenPolicies []string
	// IsRoot is true when the caller's token carries the root policy;
	// HasSudo when its ACL grants sudo on this path (or IsRoot).
	IsRoot  bool
	HasSudo bool
	// Leases records leases before the side effect they stand for.
	Leases LeaseRecorder
	// System gives the mount's TTL defaults, the clock and the store id.
	System SystemView
	// EndReads is set for a backend that holds its reads (ReadsHolder):
	// the store keeps what the request's reads opened until the backend
	// calls it, which it must before it waits on the network.
	EndReads func()
}

// ReadsHolder is a Backend that reads the store at the start of some
// requests, right after the pipeline's own reads, and can end the hold on
// them itself (Request.EndReads) before it waits on the network; the
// pipeline then lets those first reads share what its own opened.
type ReadsHolder interface {
	HoldsReads(req *Request) bool
}

// Response is what a backend returns. A nil Response with a nil error means
// nothing was found at the path (a read) or there is nothing to show.
type Response struct {
	Data     map[string]any
	Secret   *Secret
	Auth     *Auth
	Warnings []string
	// Connection says where a database credential logs in, when the
	// backend knows. It is not part of Vault's JSON envelope: the CLI uses
	// it only to build a client's settings (-format=env, pgpass, dsn and
	// `lessor exec`), and the audit log leaves it out.
	Connection *Connection
}

// Connection is the non-secret part of a database credential's client
// settings, from the connection config that issued it. An empty field is
// unknown.
type Connection struct {
	Host     string // a host name, an address, or a Unix socket directory
	Port     uint16
	Database string
	// SSLMode and SSLRootCert are the connection's sslmode and
	// sslrootcert, as its connection_url sets them ("" when it does not):
	// a client that logs in with the credential needs them as much, or
	// libpq's default (prefer) sends its password to whoever answers.
	SSLMode, SSLRootCert string
}

// AddWarning appends a warning that the CLI prints on stderr.
func (r *Response) AddWarning(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// Secret is the lease part of a response.
type Secret struct {
	LeaseID   string
	TTL       time.Duration
	Renewable bool
}

// Auth is the token part of a response (token create, login).
type Auth struct {
	ClientToken      string
	Accessor         string
	Policies         []string
	TokenPolicies    []string
	IdentityPolicies []string
	Metadata         map[string]string
	Orphan           bool
	EntityID         string
	LeaseDuration    time.Duration
	Renewable        bool
	NumUses          int // the uses the token has (0: unlimited)
}

// Backend handles the requests routed to one mount.
type Backend interface {
	HandleRequest(ctx context.Context, req *Request) (*Response, error)
	// ExistenceCheck reports whether the path already holds an entry, so
	// that the ACL can tell create from update for a write. ok is false
	// when the path has no existence check (a write is then an update).
	ExistenceCheck(ctx context.Context, req *Request) (ok, exists bool, err error)
}

// DataCanonicalizer is implemented by a Backend that reads some request
// values in another shape than they were sent: a comma-separated string
// as a list, a name lower-cased or trimmed. The core calls CanonicalData
// after routing and before the existence check and the ACL, with req.Path
// below the mount, so that allowed_parameters and denied_parameters judge
// exactly the values the backend will act on. CanonicalData rewrites
// req.Data into that shape (a list value becomes a []any of its elements)
// or refuses a value it cannot map without changing its meaning. A value
// it cannot read is left alone for the backend to refuse.
type DataCanonicalizer interface {
	CanonicalData(req *Request) error
}

// SecretBackend is a Backend whose responses carry leases. The lease
// manager calls it to renew and revoke what it issued.
type SecretBackend interface {
	Backend
	// SecretLimits returns the TTL and max TTL that now govern the secret
	// (for a database credential, its role's current values). It fails
	// when the secret can no longer be renewed (the role is gone).
	SecretLimits(ctx context.Context, s *SecretRequest) (ttl, maxTTL time.Duration, err error)
	// RenewSecret extends the secret so that it stays valid until
	// expiration.
	RenewSecret(ctx context.Context, s *SecretRequest, expiration time.Time) error
	// RevokeSecrets revokes each secret and returns one error (nil on
	// success) per secret, in order. Revoking a secret that is already
	// gone succeeds. Implementations batch the work where they can.
	RevokeSecrets(ctx context.Context, ss []*SecretRequest) []error
}

// SecretAdopter is a SecretBackend that can tell whether the secret of a
// pending lease was created. The issuer hands a credential out as soon as
// the secret exists and leaves the lease pending; whoever next meets the
// lease (reap, lookup, renew) asks the backend and activates it.
type SecretAdopter interface {
	// SecretsCreated reports, per secret and in order, whether it exists
	// and was created for that very lease (for a database credential: the
	// role's comment names this store and this lease). An error means the
	// backend could not tell; the leases then stay pending.
	SecretsCreated(ctx context.Context, ss []*SecretRequest) ([]bool, error)
}

// IdleCloser is a backend that keeps its connections open from one call
// to the next during a run of many (reap's batches), so that each batch
// does not pay a new connection; CloseIdle closes them at the end of the
// run.
type IdleCloser interface {
	CloseIdle(ctx context.Context)
}

// SecretRequest identifies one issued secret for renewal or revocation.
type SecretRequest struct {
	LeaseID      string
	InternalData map[string]any
	IssueTime    time.Time
	MountPoint   string
	Storage      storage.Store
	System       SystemView
}

// LeaseRequest asks the lease manager to record a lease before the secret
// it stands for exists, so that a crash between the two leaves a pending
// record for reap rather than a credential nothing knows about.
type LeaseRequest struct {
	// Path is the full request path; the lease id is Path + "/" + a random
	// suffix.
	Path string
	// TTL and MaxTTL are the backend's own values (a role's default_ttl
	// and max_ttl); zero means inherit from the mount and the system.
	TTL, MaxTTL time.Duration
	Renewable   bool
	// InternalData is what revocation needs later (username, config
	// name, statements). It never holds a password.
	InternalData map[string]any
	// Planned, if set, is called by Prepare with the lease it is about to
	// record (its id and times), before the record is committed: the
	// backend may start creating the secret meanwhile, so long as nothing
	// of it is committed before Prepare returns.
	Planned func(PreparedLease)
	// Check, if set, runs in the transaction that records the lease, on
	// the mount's storage (keys as the backend's Request.Storage sees
	// them), and nothing is recorded if it fails: what the backend read
	// to issue (a role, its connection) must still hold when the lease
	// that will revoke the secret is written.
	Check func(storage.Tx) error
	// CheckKeys are the keys Check reads (on the mount's storage), read
	// ahead with the record's own in one round trip on a store that pays
	// one per read.
	CheckKeys []string
}

// PreparedLease is a lease recorded as pending.
type PreparedLease struct {
	ID         string
	IssueTime  time.Time
	ExpireTime time.Time
	TTL        time.Duration
	Warnings   []string
	// CreateBy, when set, is when the issuer must have committed the
	// secret, or given up: past it, reap may take the issuer for dead and
	// settle the pending record without the secret, which would then have
	// no record. An issuer bounds its creation by it (on its own clock).
	CreateBy time.Time
}

// LeaseRecorder is the lease manager as a backend sees it while it issues.
type LeaseRecorder interface {
	// Prepare computes the lease's TTL and commits a pending record.
	Prepare(ctx context.Context, lr *LeaseRequest) (*PreparedLease, error)
	// Discard removes a pending record whose secret was certainly never
	// created (its transaction rolled back).
	Discard(ctx context.Context, leaseID string) error
	// Abandon gives up a pending record whose secret may exist (the
	// outcome of its creation is unknown) but was never handed out: the
	// lease becomes due for revocation now instead of being adopted.
	Abandon(ctx context.Context, leaseID string) error
	// Confirm is called once the secret exists, before it is handed out.
	// An error wrapping ErrLeaseRevoked means the lease was revoked
	// meanwhile, possibly before the secret existed, so that nothing
	// revoked it: the backend must destroy the secret itself and fail.
	// Any error means the secret must not be handed out.
	Confirm(ctx context.Context, leaseID string) error
}

// ErrLeaseRevoked: the lease of a secret being issued was revoked before
// the secret was handed out.
var ErrLeaseRevoked = errors.New("the lease was revoked while it was being issued")

// SystemView is what a backend may ask of the system.
type SystemView interface {
	DefaultLeaseTTL() time.Duration
	MaxLeaseTTL() time.Duration
	// StoreID identifies this store; it is written into every database
	// role's comment so that reap can find roles it created.
	StoreID() string
	Now() time.Time
}

// SiblingMounts is implemented by a SystemView that can show a backend
// the other mounts of its own type, each with its storage view. A backend
// only reads them, to refuse what would break another mount: a database
// mount must not take over a login that another mount's connection logs
// in as (its static roles would rotate that mount's admin password and
// hand it to whoever may read static-creds).
type SiblingMounts interface {
	SiblingMounts(ctx context.Context) ([]Sibling, error)
}

// StoreLoginView is implemented by a SystemView whose store lives in
// PostgreSQL: StoreLogin is the login the store connects as. No backend
// may take it over: a new password there would lock lessor out of its own
// store, the new one being kept only inside it.
type StoreLoginView interface {
	StoreLogin() string
}

// Sibling is another mount of a backend's type.
type Sibling struct {
	Path    string // with its trailing slash: "prod/"
	Storage storage.Store
}

// Errors a backend returns; the CLI maps all of them to exit code 2.
var (
	ErrPermissionDenied     = errors.New("permission denied")
	ErrUnsupportedPath      = errors.New("unsupported path")
	ErrUnsupportedOperation = errors.New("unsupported operation")
)

// CodedError is an error with an HTTP-like status, kept so that an HTTP API
// can later be a thin layer over the core: 400 bad request, 403 denied,
// 404 missing, 409 conflict, 500 backend failure.
type CodedError struct {
	Status int
	Msg    string
	// Cause, when set, stays in the chain for errors.Is/As (a cause the
	// CLI answers with a hint); Msg alone is the text.
	Cause error
}

func (e *CodedError) Error() string { return e.Msg }
func (e *CodedError) Unwrap() error { return e.Cause }

// UnsupportedPath is the error every backend returns for a path it does
// not serve: 404, naming the full path, and errors.Is ErrUnsupportedPath.
func UnsupportedPath(req *Request) error {
	return &CodedError{Status: 404, Msg: fmt.Sprintf("unsupported path %q", MaskTokens(req.MountPoint+req.Path)), Cause: ErrUnsupportedPath}
}

// UnsupportedOperation is the error every backend returns for a path it
// serves but not with this operation: 405, naming the operation and the
// full path, and errors.Is ErrUnsupportedOperation.
func UnsupportedOperation(req *Request) error {
	return &CodedError{Status: 405, Msg: fmt.Sprintf("unsupported operation %s on %q", req.Operation, MaskTokens(req.MountPoint+req.Path)), Cause: ErrUnsupportedOperation}
}

// AccessorError is an error whose text names a token's accessor. An audit
// device with hmac_accessor=true hashes accessors, so it finds this one in
// the chain and writes it hashed in the text too; an accessor would
// otherwise stay in clear in every error that names it.
type AccessorError struct {
	Accessor string
	Err      error // its text names Accessor
}

func (e *AccessorError) Error() string { return e.Err.Error() }
func (e *AccessorError) Unwrap() error { return e.Err }

// AccessorErrorf is fmt.Errorf for a message that names accessor.
func AccessorErrorf(accessor, format string, args ...any) error {
	return &AccessorError{Accessor: accessor, Err: fmt.Errorf(format, args...)}
}

// Errorf returns a 400 error: the request was wrong.
func Errorf(format string, args ...any) error {
	return &CodedError{Status: 400, Msg: fmt.Sprintf(format, args...)}
}

// WrapErrorf is Errorf that keeps cause in the chain.
func WrapErrorf(cause error, format string, args ...any) error {
	return &CodedError{Status: 400, Msg: fmt.Sprintf(format, args...), Cause: cause}
}

// PasswordGenerator is implemented by a SystemView that knows password
// policies (sys/policies/password/<name>): a backend asks it for a
// password by policy name, and gets an error wrapping "no password
// policy found" when there is no such policy.
type PasswordGenerator interface {
	GeneratePasswordFromPolicy(ctx context.Context, policyName string) (string, error)
}

// PasswordPolicyWriters is implemented by a SystemView that records who
// last wrote each password policy. PasswordPolicyWriter tells whether the
// policy's last write had sudo on its path, and otherwise the accessor of
// the token that wrote it ("" for a policy written before lessor recorded
// writers). A backend asks before its settings first name a policy: from
// then on, rewriting the policy needs sudo (see PasswordPolicyUser), so
// what it holds when it is named must not be a weaker token's choice.
// With tx, a transaction of the backend's own storage (Request.Storage),
// the policy is read in that transaction, so that the backend asks in the
// transaction that stores the name, and a rewrite of the policy commits
// either before it (and the name is refused) or after it (and the
// rewrite needs sudo); nil reads it in a transaction of its own.
type PasswordPolicyWriters interface {
	PasswordPolicyWriter(ctx context.Context, tx storage.Tx, policyName string) (sudo bool, accessor string, err error)
}

// PasswordPolicyUser is implemented by a Backend whose stored settings
// may name password policies. PasswordPolicyUses returns the paths below
// the mount (st is its storage) whose settings name the policy: rewriting
// that policy chooses the passwords those settings make next, the
// database admin's among them.
type PasswordPolicyUser interface {
	PasswordPolicyUses(ctx context.Context, st storage.Store, policyName string) ([]string, error)
}

// TokenPrefix starts every lessor token: TokenPrefix and 32 base62
// characters.
const TokenPrefix = "lsr_"

const tokenRandomLen = 32

// ReplaceTokens returns s with every lessor token in it replaced by
// with(token). A token has no place in a path, but a client may put one
// there (Vault's old auth/token/lookup/<token>), and the path is then
// logged, audited and quoted in errors.
func ReplaceTokens(s string, with func(token string) string) string {
	// Every "lsr_" followed by 32 base62 characters is a token, each
	// found on its own: one may begin inside the run of another
	// ("lsr_qqq…lsr_<token>"), and both are then replaced, as one.
	type span struct{ from, to int }
	var spans []span
	for i := 0; ; {
		j := strings.Index(s[i:], TokenPrefix)
		if j < 0 {
			break
		}
		from := i + j
		to := from + len(TokenPrefix)
		for to < len(s) && to-from-len(TokenPrefix) < tokenRandomLen && base62(s[to]) {
			to++
		}
		if to-from-len(TokenPrefix) == tokenRandomLen {
			if n := len(spans); n > 0 && from <= spans[n-1].to {
				spans[n-1].to = to
			} else {
				spans = append(spans, span{from, to})
			}
		}
		i = from + 1
	}
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.from])
		b.WriteString(with(s[sp.from:sp.to]))
		last = sp.to
	}
	b.WriteString(s[last:])
	return b.String()
}

// MaskTokens replaces every lessor token in s by "[token]".
func MaskTokens(s string) string {
	return ReplaceTokens(s, func(string) string { return "[token]" })
}

func base62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
