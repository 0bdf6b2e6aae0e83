package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lessorhq/lessor/pkg/logical"
)

// Entry is what the core knows about one request, and, for the response
// line, its outcome.
type Entry struct {
	RequestID, Operation, Path, MountType string
	// ClientToken is the caller's token; only its HMAC is written.
	ClientToken string
	// Accessor and DisplayName identify the caller's token in clear
	// (unless the device sets hmac_accessor).
	Accessor, DisplayName string
	Policies              []string
	// RemoteUser is the OS user who ran the command.
	RemoteUser string
	// RemoteAddress is the address an HTTP API request came from.
	RemoteAddress string
	// Data is the request's data; its secret values are hashed.
	Data map[string]any
	// Response is the backend's response; nil on the request line, and on
	// a response line when there was nothing to return.
	Response *logical.Response
	// Err is the request's failure, written as text. The core keeps
	// secrets out of error text, so it is written in clear.
	Err error
	// Refused says that the request was turned away before its backend
	// ran (no usable token, a policy's no, no mount at its path): its line
	// keeps at most a few kilobytes of the path, the data and the error
	// (see capRefused), so that a caller with no token, or none that
	// grants anything, cannot fill the log's disk with what it sends.
	Refused bool
}

// Broker writes entries to every enabled device. It is safe for concurrent
// use.
type Broker struct {
	devices []*device
	key     []byte
	now     func() time.Time
}

type device struct {
	path string // "file/"
	file string // file_path as given, for errors
	cfg  *fileConfig
	err  error // the stored options were invalid
	// mu keeps this process's lines apart; lines from other processes
	// are kept apart by O_APPEND and one write call per line.
	mu sync.Mutex
}

// NewBroker returns a broker for the enabled devices. hmacKey is the
// store's audit key; now is the clock (time.Now when nil). A device whose
// stored options are invalid fails every request, rather than letting
// requests go unaudited.
func NewBroker(devices []Device, hmacKey []byte, now func() time.Time) *Broker {
	if now == nil {
		now = time.Now
	}
	b := &Broker{key: bytes.Clone(hmacKey), now: now}
	for _, d := range devices {
		cfg, err := parseDevice(d)
		b.devices = append(b.devices, &device{path: d.Path, file: d.Options["file_path"], cfg: cfg, err: err})
	}
	return b
}

// LogRequest writes the request line to every device. It fails when any
// device could not be written; the core must then refuse the request.
func (b *Broker) LogRequest(ctx context.Context, e *Entry) error {
	return b.log(ctx, "request", e)
}

// LogResponse writes the response line to every device. It fails when any
// device could not be written; the core must then fail the request.
func (b *Broker) LogResponse(ctx context.Context, e *Entry) error {
	return b.log(ctx, "response", e)
}

func (b *Broker) log(ctx context.Context, typ string, e *Entry) error {
	if len(b.devices) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit %s %s: %w", typ, e.Path, err)
	}
	if len(b.key) == 0 {
		// An empty key would make every hash a plain, guessable digest.
		return fmt.Errorf("audit %s %s: no hmac key", typ, e.Path)
	}
	t := b.now().UTC().Format(time.RFC3339Nano)

	// Devices differ only in hmac_accessor: format each variant once.
	var lines [2][]byte
	var errs []error
	for _, d := range b.devices {
		if d.err != nil {
			errs = append(errs, d.err)
			continue
		}
		i := 0
		if d.cfg.hashAccessor {
			i = 1
		}
		if lines[i] == nil {
			line, err := b.format(t, typ, e, d.cfg.hashAccessor)
			if err != nil {
				return fmt.Errorf("audit %s %s: %w", typ, e.Path, err)
			}
			lines[i] = line
		}
		if err := d.write(lines[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &Error{errors.Join(errs...)}
	}
	return nil
}

// Error is the failure of devices to take a line: *DeviceErrors, or a
// device's stored options found invalid. Its text names the devices' files
// and the host's errors, for the operator: a server tells its clients less
// (see httpapi).
type Error struct{ err error }

func (e *Error) Error() string { return e.err.Error() }
func (e *Error) Unwrap() error { return e.err }

// write appends one line with one write call, opening the file afresh so
// that a log rotated away is recreated rather than written to its old
// name; the cost, an open and a close, is small beside one command.
func (d *device) write(line []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, _, err := openLog(d.cfg, false)
	if err == nil {
		if !endsLine(f) {
			// A write cut short (a full disk) left part of a line: end
			// it, or this line would join it and a JSON-lines reader
			// would lose both.
			line = append([]byte{'\n'}, line...)
		}
		_, err = f.Write(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return &DeviceError{Device: d.path, File: d.file, Err: bare(err)}
	}
	return nil
}

// endsLine reports whether the log f is empty or ends with a newline. It
// answers yes when it cannot tell (a log lessor may only write), rather
// than put blank lines in a log that is whole. Another process's line may
// be in the middle of its write, whose size a stat already shows: a cut
// line stays cut, so it asks again for a few milliseconds before it says
// no.
func endsLine(f *os.File) bool {
	for try := 0; ; try++ {
		fi, err := f.Stat()
		if err != nil || fi.Size() == 0 {
			return true
		}
		var last [1]byte
		if _, err := f.ReadAt(last[:], fi.Size()-1); err != nil || last[0] == '\n' {
			return true
		}
		if try == 5 {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The line's shape follows Vault's audit entries, so that tools reading
// those read these.
type (
	jsonEntry struct {
		Time     string        `json:"time"`
		Type     string        `json:"type"`
		Auth     *jsonAuth     `json:"auth"`
		Request  *jsonRequest  `json:"request"`
		Response *jsonResponse `json:"response,omitempty"`
		Error    string        `json:"error,omitempty"`
	}
	jsonAuth struct {
		ClientToken      string   `json:"client_token,omitempty"`
		Accessor         string   `json:"accessor,omitempty"`
		DisplayName      string   `json:"display_name,omitempty"`
		Policies         []string `json:"policies,omitempty"`
		TokenPolicies    []string `json:"token_policies,omitempty"`
		IdentityPolicies []string `json:"identity_policies,omitempty"`
		Metadata         any      `json:"metadata,omitempty"`
		Orphan           bool     `json:"orphan,omitempty"`
		EntityID         string   `json:"entity_id,omitempty"`
		TokenTTL         int64    `json:"token_ttl,omitempty"`
		Renewable        bool     `json:"renewable,omitempty"`
	}
	jsonRequest struct {
		ID         string `json:"id,omitempty"`
		Operation  string `json:"operation"`
		MountType  string `json:"mount_type,omitempty"`
		Path       string `json:"path"`
		RemoteUser string `json:"remote_user,omitempty"`
		// RemoteAddress is Vault's request.remote_address.
		RemoteAddress string `json:"remote_address,omitempty"`
		Data          any    `json:"data,omitempty"`
		// Cut names the fields of a refused request cut short
		// (capRefused); lessor's own, absent from Vault's entries.
		Cut []string `json:"lessor_cut,omitempty"`
	}
	jsonResponse struct {
		Data     any         `json:"data,omitempty"`
		Secret   *jsonSecret `json:"secret,omitempty"`
		Auth     *jsonAuth   `json:"auth,omitempty"`
		Warnings []string    `json:"warnings,omitempty"`
	}
	jsonSecret struct {
		LeaseID   string `json:"lease_id"`
		TTL       int64  `json:"ttl"`
		Renewable bool   `json:"renewable"`
	}
)

// format renders one entry as a JSON line.
func (b *Broker) format(t, typ string, e *Entry, hashAccessor bool) ([]byte, error) {
	r := newRedactor(b.key, e.Path, hashAccessor)
	accessor := func(a string) string {
		if hashAccessor && a != "" {
			return HashString(b.key, a)
		}
		return a
	}
	token := func(tok string) string {
		if tok == "" {
			return ""
		}
		return HashString(b.key, tok)
	}
	// Accessors also appear in the path (Vault's old
	// auth/token/lookup-accessor/<accessor>) and in error text ("renew
	// token <accessor>"): there, those the entry names are hashed too.
	text := func(s string) string { return s }
	if hashAccessor {
		known := entryAccessors(e)
		text = func(s string) string {
			return replaceRuns(s, func(run string) string {
				if known[run] {
					return HashString(b.key, run)
				}
				return run
			})
		}
	}

	reqData, err := r.tree(e.Data)
	if err != nil {
		return nil, fmt.Errorf("request data: %w", err)
	}
	out := jsonEntry{
		Time: t,
		Type: typ,
		Auth: &jsonAuth{
			ClientToken: token(e.ClientToken),
			Accessor:    accessor(e.Accessor),
			DisplayName: e.DisplayName,
			Policies:    e.Policies,
		},
		Request: &jsonRequest{
			ID:            e.RequestID,
			Operation:     e.Operation,
			MountType:     e.MountType,
			Path:          text(logical.ReplaceTokens(e.Path, token)),
			RemoteUser:    e.RemoteUser,
			RemoteAddress: e.RemoteAddress,
			Data:          reqData,
		},
	}
	if e.Err != nil {
		out.Error = text(logical.ReplaceTokens(e.Err.Error(), token))
	}
	if resp := e.Response; resp != nil && typ == "response" {
		data, err := r.tree(resp.Data)
		if err != nil {
			return nil, fmt.Errorf("response data: %w", err)
		}
		jr := &jsonResponse{Data: data}
		for _, w := range resp.Warnings {
			// A warning may name what the caller sent (the keys it
			// ignored), a token among them.
			jr.Warnings = append(jr.Warnings, text(logical.ReplaceTokens(w, token)))
		}
		if s := resp.Secret; s != nil {
			jr.Secret = &jsonSecret{LeaseID: s.LeaseID, TTL: int64(s.TTL / time.Second), Renewable: s.Renewable}
		}
		if a := resp.Auth; a != nil {
			md, err := r.tree(a.Metadata)
			if err != nil {
				return nil, fmt.Errorf("response auth metadata: %w", err)
			}
			jr.Auth = &jsonAuth{
				ClientToken:      token(a.ClientToken),
				Accessor:         accessor(a.Accessor),
				Policies:         a.Policies,
				TokenPolicies:    a.TokenPolicies,
				IdentityPolicies: a.IdentityPolicies,
				Metadata:         md,
				Orphan:           a.Orphan,
				EntityID:         a.EntityID,
				TokenTTL:         int64(a.LeaseDuration / time.Second),
				Renewable:        a.Renewable,
			}
		}
		out.Response = jr
	}
	if e.Refused {
		capRefused(&out)
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Keep "&", "<" and ">" literal so that a grep for a path or a URL
	// finds it.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return inert(buf.Bytes()), nil // Encode ends the line with "\n"
}

// The most of a refused request's line (Entry.Refused) that comes from
// what the caller sent: bytes of the path and of the error text, and of the
// data as JSON. Lessor's paths and errors are a few hundred bytes, so a
// line is cut only for a caller who sends far more than any request needs;
// a request that ran is written whole, as in Vault: its caller holds a
// token that grants it, which the operator can revoke.
const (
	refusedPathMax  = 1 << 10
	refusedErrorMax = 2 << 10
	refusedDataMax  = 8 << 10
)

// capRefused cuts what the caller sent in a refused request's entry to the
// limits above, after its secrets were hashed (so that no cut leaves part
// of a token in clear). A cut string ends with "…[cut: N bytes]", N being
// its length in full; data too large is replaced by {"lessor_cut": N},
// N being its size as JSON; and request.lessor_cut names what was cut,
// for a reader that looks for that rather than in the strings.
func capRefused(out *jsonEntry) {
	var cut []string
	if s, ok := cutString(out.Request.Path, refusedPathMax); ok {
		out.Request.Path = s
		cut = append(cut, "path")
	}
	if s, ok := cutString(out.Error, refusedErrorMax); ok {
		out.Error = s
		cut = append(cut, "error")
	}
	if out.Request.Data != nil {
		// Measured as the line will hold it: a "$" there takes six bytes.
		raw, err := json.Marshal(out.Request.Data)
		if err != nil || len(inert(raw)) > refusedDataMax {
			out.Request.Data = map[string]any{"lessor_cut": len(raw)}
			cut = append(cut, "data")
		}
	}
	out.Request.Cut = cut
}

// cutString returns s cut to at most max bytes (at a character boundary)
// with the marker of the cut, and whether it cut anything.
func cutString(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…[cut: " + strconv.Itoa(len(s)) + " bytes]", true
}

// inert writes, as their \u escapes, what a shell or a terminal reading a
// JSON line would act on. The caller chooses the path, the data and much
// of the error text. A shell reading the line (a device pointed at a
// ~/.bashrc or ~/.ssh/rc, a viewer that evals it) would run a $(…) or `…`
// in them: JSON strings are double-quoted, where a shell still expands
// both. And encoding/json escapes C0 controls but writes the C1 ones
// (U+0080–U+009F, UTF-8 C2 80 – C2 9F) as they are, where some terminals
// obey U+009B as CSI: a `tail -f` of the log would take the caller's
// escape sequences. Outside strings JSON has none of these, so the swap
// keeps what a JSON reader decodes.
func inert(line []byte) []byte {
	if bytes.IndexByte(line, '$') < 0 && bytes.IndexByte(line, '`') < 0 && bytes.IndexByte(line, 0xc2) < 0 {
		return line
	}
	out := make([]byte, 0, len(line)+32)
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '$', c == '`':
			out = fmt.Appendf(out, `\u%04x`, c)
		case c == 0xc2 && i+1 < len(line) && line[i+1] >= 0x80 && line[i+1] <= 0x9f:
			i++
			out = fmt.Appendf(out, `\u%04x`, line[i])
		default:
			out = append(out, c)
		}
	}
	return out
}

// tree turns v into a private copy made of plain JSON values and hashes
// its secrets. Going through JSON copies the caller's maps (which are never
// changed), and lets the walk see what will actually be written, whatever
// Go types the data was built from (structs, map[string]string, []byte).
func (r *redactor) tree(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	// Numbers keep their exact text, as a direct encoding would.
	dec.UseNumber()
	var t any
	if err := dec.Decode(&t); err != nil {
		return nil, err
	}
	if m, ok := t.(map[string]any); ok && len(m) == 0 {
		return nil, nil // omitted, like a nil map
	}
	return r.redact(t, clear), nil
}

// accessorLen is the length of a token accessor: 24 base62 characters.
const accessorLen = 24

// entryAccessors returns the token accessors e names anywhere: its
// caller's, the request's and the response's "accessor", those the error
// names (logical.AccessorError), and, under auth/token/, where no lease id
// is, every run of the path that has an accessor's form (a client may put
// one there). Only runs of 24 base62 characters are kept: a shorter value
// a caller sent as "accessor" ("token") must not hash words of the path.
func entryAccessors(e *Entry) map[string]bool {
	known := map[string]bool{}
	add := func(a string) {
		if len(a) == accessorLen && strings.IndexFunc(a, func(r rune) bool { return r > 0x7f || !base62(byte(r)) }) < 0 {
			known[a] = true
		}
	}
	add(e.Accessor)
	if a, ok := e.Data["accessor"].(string); ok {
		add(a)
	}
	if resp := e.Response; resp != nil {
		if resp.Auth != nil {
			add(resp.Auth.Accessor)
		}
		if a, ok := resp.Data["accessor"].(string); ok {
			add(a)
		}
	}
	for _, a := range errorAccessors(e.Err) {
		add(a)
	}
	if strings.HasPrefix(e.Path, "auth/token/") {
		replaceRuns(e.Path, func(run string) string { add(run); return run })
	}
	return known
}

// errorAccessors returns the accessors named by the AccessorErrors in err's
// chain, joined errors included.
func errorAccessors(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		for err != nil {
			if ae, ok := err.(*logical.AccessorError); ok {
				out = append(out, ae.Accessor)
			}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					walk(e)
				}
				return
			}
			err = errors.Unwrap(err)
		}
	}
	walk(err)
	return out
}

// replaceRuns returns s with each maximal run of base62 characters
// replaced by with(run).
func replaceRuns(s string, with func(run string) string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && base62(s[j]) {
			j++
		}
		if j > i {
			b.WriteString(with(s[i:j]))
			i = j
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

func base62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
