package cli

// This file holds "edgevault events": the senders allowed to post monitoring
// events (sys/events/sources), the rules that turn events into revocations
// (sys/events/rules, with a dry run), the revocation log
// (sys/events/revocations) and "events replay", which posts a saved event
// to an intake endpoint exactly as its sender would, signature included.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/revoke"
)

// eventsPrefix is where the events API lives.
const eventsPrefix = "sys/events/"

// eventsNameRE is what source and rule names look like (path segments), as
// the server checks them.
var eventsNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// checkEventsName refuses a source or rule name the server would refuse;
// what names the argument in the error.
func checkEventsName(what, name string) error {
	if !eventsNameRE.MatchString(name) {
		return usagef("%s %q: expected 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

func newEventsCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("events", "Configure event-driven revocation: sources, rules, the revocation log",
		`Configure event-driven revocation. Monitoring systems (Alertmanager, anything
that sends CloudEvents or plain JSON) post events to sys/events/<kind>; a
source says who may post and how it proves it; rules (CEL expressions) turn
matching events into revocations, pushed to the agents over their sync
streams and recorded in the revocation log.`,
		newEventsSourceCmd(e, &cf),
		newEventsRuleCmd(e, &cf),
		newEventsRevocationCmd(e, &cf),
		newEventsReplayCmd(e, &cf),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

// newEventsCRUD returns the read, list and delete subcommands of one kind
// of object under sys/events/<coll>/ ("source" or "rule").
func newEventsCRUD(e *env, cf *clientFlags, what, coll string) []*cobra.Command {
	upper := strings.ToUpper(what[:1]) + what[1:]
	read := &cobra.Command{
		Use:   "read NAME",
		Short: "Show a " + what,
		Long:  "Show the " + what + " NAME (GET /v1/" + eventsPrefix + coll + "/NAME).\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connectAfter(e, checkEventsName("NAME", args[0]))
			if err != nil {
				return err
			}
			s, err := c.api.Logical().ReadWithContext(cmd.Context(), eventsPrefix+coll+"/"+args[0])
			if err != nil {
				return c.fail("read "+what+" "+args[0], err)
			}
			if s == nil {
				return fmt.Errorf("read %s %s: no such %s", what, args[0], what)
			}
			return c.printEventsData(s)
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the " + what + "s",
		Long:  "List the names of the " + what + "s (LIST /v1/" + eventsPrefix + coll + ").\n" + exitCodesHelp,
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			s, err := c.api.Logical().ListWithContext(cmd.Context(), eventsPrefix+coll)
			if err != nil {
				return c.fail("list "+what+"s", err)
			}
			var keys []string
			if s != nil {
				raw, _ := s.Data["keys"].([]any)
				for _, k := range raw {
					keys = append(keys, fmt.Sprint(k))
				}
			}
			sort.Strings(keys)
			return c.printNames(keys)
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a " + what,
		Long:  "Delete the " + what + " NAME (DELETE /v1/" + eventsPrefix + coll + "/NAME).\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connectAfter(e, checkEventsName("NAME", args[0]))
			if err != nil {
				return err
			}
			if _, err := c.api.Logical().DeleteWithContext(cmd.Context(), eventsPrefix+coll+"/"+args[0]); err != nil {
				return c.fail("delete "+what+" "+args[0], err)
			}
			return c.success("%s deleted (if it existed): %s", upper, args[0])
		},
	}
	return []*cobra.Command{read, list, del}
}

// printEventsData prints a response of the events API: JSON, or its data
// flattened into rows (nested objects as dotted keys, lists of plain values
// comma-separated, anything else as compact JSON), then its warnings.
func (c *conn) printEventsData(s *api.Secret) error {
	if c.json() {
		return printJSON(c.out, s)
	}
	var rows []row
	flattenRows("", s.Data, &rows)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].key < rows[j].key })
	if err := printTable(c.out, rows); err != nil {
		return err
	}
	printWarnings(c.out, s.Warnings)
	return nil
}

// flattenRows appends the rows of m, keys prefixed with prefix.
func flattenRows(prefix string, m map[string]any, rows *[]row) {
	for k, v := range m {
		key := prefix + k
		switch t := v.(type) {
		case map[string]any:
			if len(t) == 0 {
				*rows = append(*rows, row{key, "{}"})
				continue
			}
			flattenRows(key+".", t, rows)
		case []any:
			plain := make([]string, 0, len(t))
			for _, x := range t {
				switch x.(type) {
				case map[string]any, []any:
					plain = nil
				default:
					plain = append(plain, formatValue(x))
				}
				if plain == nil {
					break
				}
			}
			if plain == nil && len(t) > 0 {
				b, _ := json.Marshal(normalize(t))
				*rows = append(*rows, row{key, string(b)})
				continue
			}
			*rows = append(*rows, row{key, strings.Join(plain, ",")})
		default:
			*rows = append(*rows, row{key, formatValue(v)})
		}
	}
}

// ---- sources ----

func newEventsSourceCmd(e *env, cf *clientFlags) *cobra.Command {
	subs := append([]*cobra.Command{newEventsSourceWriteCmd(e, cf)}, newEventsCRUD(e, cf, "source", "sources")...)
	return newGroupCmd("source", "Write, read, list and delete event sources",
		`An event source is a sender allowed to post events: the intake endpoints
(kinds) it may use, how it authenticates (a bearer token, or an HMAC-SHA256
signature of the body) and how many events per second it may send.`, subs...)
}

// sourceFields are the KEY=VALUE arguments "events source write" accepts.
var sourceFields = []string{"auth", "secret", "kinds", "rate", "burst", "header", "timestamp_header", "max_skew"}

// sourceBody checks the arguments of "events source write NAME ARGS..."
// and returns the request body. The secret must come from a file or
// standard input: one typed on the command line stays in shell history.
// Errors name the field at fault and never repeat a secret.
func sourceBody(name string, args []string, stdin io.Reader, readFile func(string) ([]byte, error)) (map[string]any, error) {
	if err := checkEventsName("NAME", name); err != nil {
		return nil, err
	}
	for i, a := range args {
		if a == "-" || strings.HasPrefix(a, "@") {
			return nil, usagef("argument %d: expected KEY=VALUE (one of %s)", i+2, strings.Join(sourceFields, ", "))
		}
		if v, ok := strings.CutPrefix(a, "secret="); ok && v != "-" && !strings.HasPrefix(v, "@") {
			return nil, hintError{usagef("secret: give it as secret=@FILE or secret=- (standard input), not on the command line"),
				"a secret typed on the command line stays in the shell's history and the process list"}
		}
	}
	data, err := parseKVData(args, stdin, readFile)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for k, v := range data {
		s, _ := v.(string)
		if !contains(sourceFields, k) {
			return nil, usagef("%s: unknown field (expected one of %s)", k, strings.Join(sourceFields, ", "))
		}
		fields[k] = s
	}
	src := revoke.Source{Name: name, Auth: revoke.Auth{Method: revoke.AuthMethod(fields["auth"]),
		Header: fields["header"], TimestampHeader: fields["timestamp_header"]}}
	if src.Auth.Method == "" {
		return nil, usagef("auth: required (bearer or hmac-sha256)")
	}
	if k := fields["kinds"]; k == "" {
		return nil, usagef("kinds: required (a comma-separated list of alertmanager, cloudevents, generic)")
	} else {
		for _, s := range strings.Split(k, ",") {
			src.Kinds = append(src.Kinds, revoke.Kind(strings.TrimSpace(s)))
		}
	}
	if v, ok := fields["rate"]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, usagef("rate %q: expected a positive number of events per second", v)
		}
		src.RateLimit.PerSecond = f
	}
	if v, ok := fields["burst"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > revoke.MaxBurst {
			return nil, usagef("burst %q: expected a whole number from 1 to %d", v, revoke.MaxBurst)
		}
		src.RateLimit.Burst = n
	}
	if v, ok := fields["max_skew"]; ok {
		d, err := parseDuration("max_skew", v)
		if err != nil {
			return nil, err
		}
		src.Auth.MaxSkewSeconds = int(d / time.Second)
	}
	secret, hasSecret := fields["secret"]
	secret = strings.TrimRight(secret, "\r\n")
	check := src
	if hasSecret {
		check = src.WithSecret([]byte(secret))
	} else {
		// The server keeps the secret it has; check the rest.
		check = src.WithSecret([]byte(strings.Repeat("k", revoke.MinSecretLen)))
	}
	if err := check.Validate(); err != nil {
		return nil, usagef("%s", strings.TrimPrefix(err.Error(), revoke.ErrInvalidSource.Error()+": "))
	}
	auth := map[string]any{"method": string(src.Auth.Method)}
	if src.Auth.Header != "" {
		auth["header"] = src.Auth.Header
	}
	if src.Auth.TimestampHeader != "" {
		auth["timestamp_header"] = src.Auth.TimestampHeader
	}
	if src.Auth.MaxSkewSeconds != 0 {
		auth["max_skew_seconds"] = src.Auth.MaxSkewSeconds
	}
	kinds := make([]string, len(src.Kinds))
	for i, k := range src.Kinds {
		kinds[i] = string(k)
	}
	body := map[string]any{"kinds": kinds, "auth": auth}
	if rl := src.RateLimit; rl != (revoke.RateLimit{}) {
		r := map[string]any{}
		if rl.PerSecond != 0 {
			r["per_second"] = rl.PerSecond
		}
		if rl.Burst != 0 {
			r["burst"] = rl.Burst
		}
		body["rate_limit"] = r
	}
	if hasSecret {
		body["secret"] = secret
	}
	return body, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newEventsSourceWriteCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "write NAME auth=bearer|hmac-sha256 kinds=KIND[,KIND...] [secret=@FILE|-] [rate=N] [burst=N] [header=H] [timestamp_header=H] [max_skew=D]",
		Short: "Create or replace an event source",
		Long: `Create or replace the event source NAME (PUT /v1/sys/events/sources/NAME):

  auth=bearer         the sender sends "Authorization: Bearer <secret>"
  auth=hmac-sha256    the sender signs the raw body: header X-Edgevault-Signature
                      (or header=H): sha256=<hex HMAC-SHA256 of the body>; with
                      timestamp_header=H the signature covers "<unix time>.<body>"
                      and a request more than max_skew (default 5m) old is refused
  kinds=...           the intake endpoints it may post to: alertmanager, cloudevents, generic
  secret=@FILE|-      the token or HMAC key (16 to 1024 bytes), from a file or
                      standard input, never the command line; a trailing newline
                      is dropped. Left out, the server keeps the source's secret.
  rate=N burst=N      at most N events per second, bursts of burst (defaults 10, 100)
` + exitCodesHelp,
		Example: `  edgevault events source write alertmanager auth=bearer secret=@am.token kinds=alertmanager rate=10 burst=20
  openssl rand -hex 32 | edgevault events source write ci auth=hmac-sha256 secret=- kinds=cloudevents,generic`,
		Args: argsBetween(1, -1, "NAME KEY=VALUE..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := sourceBody(args[0], args[1:], e.stdin, os.ReadFile)
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			if _, err := c.api.Logical().WriteWithContext(cmd.Context(), eventsPrefix+"sources/"+args[0], body); err != nil {
				return c.fail("write source "+args[0], err)
			}
			return c.success("Source written: %s", args[0])
		},
	}
}

// ---- rules ----

func newEventsRuleCmd(e *env, cf *clientFlags) *cobra.Command {
	subs := append([]*cobra.Command{newEventsRuleWriteCmd(e, cf)}, newEventsCRUD(e, cf, "rule", "rules")...)
	subs = append(subs, newEventsRuleTestCmd(e, cf))
	return newGroupCmd("rule", "Write, read, list, test and delete revocation rules",
		`A rule is a CEL expression over an event and the actions to take when it is
true: quarantine_agent, revoke_agent, revoke_prefix, revoke_token_accessor,
rotate_zone_key, seal_zone, notify, and the recovery actions release_agent and
unseal_zone; on_resolved actions run when the alert resolves. The server type-checks a rule when it is written; "rule test" shows
what a rule would revoke for a sample event, without doing it.`, subs...)
}

// ruleFields are the KEY=VALUE arguments "events rule write" accepts.
var ruleFields = []string{"expression", "actions", "on_resolved", "description"}

// ruleBody checks the arguments of "events rule write NAME ARGS..." (or,
// with file set, the rule in that JSON file) and returns the request body.
// actions and on_resolved are JSON arrays (usually @FILE).
func ruleBody(name, file string, args []string, stdin io.Reader, readFile func(string) ([]byte, error)) (map[string]any, error) {
	if err := checkEventsName("NAME", name); err != nil {
		return nil, err
	}
	var data map[string]any
	if file != "" {
		if len(args) > 0 {
			return nil, usagef("-file: give the rule either in a file or as KEY=VALUE arguments, not both")
		}
		var raw []byte
		var err error
		if file == "-" {
			raw, err = io.ReadAll(stdin)
		} else {
			raw, err = readFile(file)
		}
		if err != nil {
			return nil, fmt.Errorf("-file %s: %w", file, err)
		}
		data = map[string]any{}
		if err := mergeJSONObject(data, raw, "-file "+file); err != nil {
			return nil, err
		}
		if n, ok := data["name"]; ok {
			if n != name {
				return nil, usagef("-file %s: name %v differs from NAME %q", file, n, name)
			}
			delete(data, "name")
		}
	} else {
		for i, a := range args {
			if a == "-" || strings.HasPrefix(a, "@") {
				return nil, usagef("argument %d: expected KEY=VALUE (one of %s), or -file FILE for a whole rule", i+2, strings.Join(ruleFields, ", "))
			}
		}
		var err error
		if data, err = parseKVData(args, stdin, readFile); err != nil {
			return nil, err
		}
		for _, k := range []string{"actions", "on_resolved"} {
			s, ok := data[k].(string)
			if !ok {
				continue
			}
			var list []any
			dec := json.NewDecoder(strings.NewReader(s))
			dec.UseNumber()
			if err := dec.Decode(&list); err != nil || list == nil {
				return nil, usagef("%s: expected a JSON array of actions such as [{\"type\":\"revoke_prefix\",\"params\":{...}}]", k)
			}
			data[k] = list
		}
	}
	for k := range data {
		if !contains(ruleFields, k) {
			return nil, usagef("%s: unknown field (expected one of %s)", k, strings.Join(ruleFields, ", "))
		}
	}
	if s, _ := data["expression"].(string); strings.TrimSpace(s) == "" {
		return nil, usagef("expression: required (a CEL expression over event, such as event.labels.severity == \"critical\")")
	}
	a, _ := data["actions"].([]any)
	r, _ := data["on_resolved"].([]any)
	if len(a) == 0 && len(r) == 0 {
		return nil, usagef("actions: required (a JSON array, such as actions=@actions.json), unless on_resolved is given")
	}
	return data, nil
}

func newEventsRuleWriteCmd(e *env, cf *clientFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "write NAME (expression=EXPR actions=@FILE [on_resolved=@FILE] [description=TEXT] | -file RULE.json)",
		Short: "Create or replace a revocation rule",
		Long: `Create or replace the rule NAME (PUT /v1/sys/events/rules/NAME). Give its fields
as KEY=VALUE (VALUE may be @FILE or - for standard input):

  expression=EXPR      CEL over event (labels, annotations, status, source, kind, id,
                       data, starts_at), true for the events the rule acts on
  actions=@FILE        a JSON array of {"type": ..., "params": {...}}; params may
                       reference event fields, such as "{{labels.agent_id}}"
  on_resolved=@FILE    actions for the resolved alert (a recovery), optional
  description=TEXT     free text

or the whole rule as a JSON object with -file RULE.json. The server
type-checks the expression and the actions and refuses a bad rule.
` + exitCodesHelp,
		Example: `  edgevault events rule write isolate-compromised \
      expression='event.status == "firing" && event.labels.alertname == "NodeCompromised"' \
      actions=@actions.json
  edgevault events rule write isolate-compromised -file rule.json`,
		Args: argsBetween(1, -1, "NAME KEY=VALUE... or NAME -file FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := ruleBody(args[0], file, args[1:], e.stdin, os.ReadFile)
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			if _, err := c.api.Logical().WriteWithContext(cmd.Context(), eventsPrefix+"rules/"+args[0], body); err != nil {
				return c.fail("write rule "+args[0], err)
			}
			return c.success("Rule written: %s", args[0])
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the whole rule from this JSON file (- for standard input)")
	return cmd
}

// readEventFile reads a JSON object from file ("-": stdin) for a dry run.
func readEventFile(file string, stdin io.Reader, readFile func(string) ([]byte, error)) (map[string]any, error) {
	var raw []byte
	var err error
	if file == "-" {
		raw, err = io.ReadAll(stdin)
	} else {
		raw, err = readFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("EVENT_FILE %s: %w", file, err)
	}
	ev := map[string]any{}
	if err := mergeJSONObject(ev, raw, "EVENT_FILE "+file); err != nil {
		return nil, err
	}
	return ev, nil
}

func newEventsRuleTestCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "test NAME EVENT_FILE|-",
		Short: "Dry-run a rule against a sample event: show what it would revoke",
		Long: `Evaluate the rule NAME against the event in EVENT_FILE (a JSON object, or - for
standard input) and print the dry run: whether it matched, and exactly what
each action would revoke, without revoking anything (POST
/v1/sys/events/rules/NAME/test {"event": ...}).
` + exitCodesHelp,
		Example: `  edgevault events rule test isolate-compromised alert.json`,
		Args:    argsBetween(2, 2, "NAME EVENT_FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := checkEventsName("NAME", args[0])
			var ev map[string]any
			if err == nil {
				ev, err = readEventFile(args[1], e.stdin, os.ReadFile)
			}
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			s, err := c.api.Logical().WriteWithContext(cmd.Context(), eventsPrefix+"rules/"+args[0]+"/test", map[string]any{"event": ev})
			if err != nil {
				return c.fail("test rule "+args[0], err)
			}
			if s == nil {
				return fmt.Errorf("test rule %s: the server returned no dry run", args[0])
			}
			return c.printEventsData(s)
		},
	}
}

// ---- the revocation log ----

func newEventsRevocationCmd(e *env, cf *clientFlags) *cobra.Command {
	read := &cobra.Command{
		Use:   "read ID",
		Short: "Show a revocation and which agents applied it, when",
		Long: `Show the revocation ID from the revocation log (GET
/v1/sys/events/revocations/ID): the event and rule that caused it, the action
and its parameters, and per agent whether it is pending, applied (when), or
offline (it applies the revocation on reconnect, before serving).
` + exitCodesHelp,
		Example: `  edgevault events revocation read edge-1.42`,
		Args:    argsBetween(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := strings.TrimSpace(args[0])
			var err error
			if id == "" || strings.ContainsAny(id, "/?#%") || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				err = usagef("ID %q: expected a revocation ID such as edge-1.42", id)
			}
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			s, err := c.api.Logical().ReadWithContext(cmd.Context(), eventsPrefix+"revocations/"+id)
			if err != nil {
				return c.fail("read revocation "+id, err)
			}
			if s == nil {
				return fmt.Errorf("read revocation %s: no such revocation", id)
			}
			return c.printEventsData(s)
		},
	}
	return newGroupCmd("revocation", "Read the revocation log", `Every action a rule takes is an entry of the revocation log, numbered per zone.`, read)
}

// ---- replay ----

// replayFlags are the flags of "events replay".
type replayFlags struct {
	source, kind, secretFile, auth, header, tsHeader string
}

// replayRequest is what "events replay" sends.
type replayRequest struct {
	path    string // API path, without /v1/
	query   string // source=NAME
	body    []byte
	headers http.Header
}

// detectKind guesses an event's intake kind from its JSON: CloudEvents
// carry specversion, Alertmanager webhooks version and alerts; anything
// else is generic.
func detectKind(body []byte) revoke.Kind {
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) != nil {
		return revoke.KindGeneric
	}
	if _, ok := probe["specversion"]; ok {
		return revoke.KindCloudEvents
	}
	_, v := probe["version"]
	_, a := probe["alerts"]
	if v && a {
		return revoke.KindAlertmanager
	}
	return revoke.KindGeneric
}

// buildReplay checks the arguments of "events replay" and builds the
// request as the sender would send it: the raw body as read, authenticated
// with the source's secret (if given) as a bearer token or an HMAC-SHA256
// signature (revoke.Sign) of the body, or of "<unix time>.<body>" with a
// timestamp header.
func buildReplay(f replayFlags, file string, stdin io.Reader, readFile func(string) ([]byte, error), now time.Time) (replayRequest, error) {
	var rr replayRequest
	if f.source == "" {
		return rr, usagef("-source: required (the source the event is posted as)")
	}
	if err := checkEventsName("-source", f.source); err != nil {
		return rr, err
	}
	if f.kind != "" && !revoke.Kind(f.kind).Valid() {
		return rr, usagef("-kind %q: expected alertmanager, cloudevents or generic", f.kind)
	}
	switch f.auth {
	case "", string(revoke.AuthBearer), string(revoke.AuthHMACSHA256):
	default:
		return rr, usagef("-auth %q: expected bearer or hmac-sha256", f.auth)
	}
	if f.secretFile == "" && (f.auth != "" || f.header != "" || f.tsHeader != "") {
		return rr, usagef("-auth, -signature-header and -timestamp-header need -secret-file")
	}
	if f.auth == string(revoke.AuthBearer) && (f.header != "" || f.tsHeader != "") {
		return rr, usagef("-signature-header and -timestamp-header apply to -auth=hmac-sha256 only")
	}
	if f.secretFile == "-" && file == "-" {
		return rr, usagef("-secret-file and FILE cannot both be standard input")
	}
	read := func(name string) ([]byte, error) {
		if name == "-" {
			return io.ReadAll(stdin)
		}
		return readFile(name)
	}
	body, err := read(file)
	if err != nil {
		return rr, fmt.Errorf("FILE %s: %w", file, err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return rr, usagef("FILE %s: empty", file)
	}
	if !json.Valid(body) {
		return rr, usagef("FILE %s: not JSON (it is sent as it is, so it must be the event's exact JSON)", file)
	}
	kind := revoke.Kind(f.kind)
	if kind == "" {
		kind = detectKind(body)
	}
	rr.path, rr.query, rr.body = eventsPrefix+string(kind), "source="+f.source, body
	rr.headers = http.Header{"Content-Type": {"application/json"}}
	if kind == revoke.KindCloudEvents {
		rr.headers.Set("Content-Type", "application/cloudevents+json")
	}
	if f.secretFile == "" {
		return rr, nil
	}
	raw, err := read(f.secretFile)
	if err != nil {
		return rr, fmt.Errorf("-secret-file %s: %w", f.secretFile, err)
	}
	secret := bytes.TrimRight(raw, "\r\n")
	if len(secret) == 0 {
		return rr, usagef("-secret-file %s: empty", f.secretFile)
	}
	if f.auth == string(revoke.AuthBearer) {
		rr.headers.Set("Authorization", "Bearer "+string(secret))
		return rr, nil
	}
	ts := ""
	if f.tsHeader != "" {
		ts = strconv.FormatInt(now.Unix(), 10)
		rr.headers.Set(f.tsHeader, ts)
	}
	rr.headers.Set(firstSet(f.header, revoke.DefaultSignatureHeader), revoke.Sign(secret, ts, body))
	return rr, nil
}

func newEventsReplayCmd(e *env, cf *clientFlags) *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay -source NAME [-kind KIND] [-secret-file F [-auth hmac-sha256|bearer]] FILE|-",
		Short: "Post a saved event to an intake endpoint, as its sender would",
		Long: `Post the event in FILE (or standard input), byte for byte, to
/v1/sys/events/<kind>?source=NAME, as the sender would: with -secret-file,
signed with HMAC-SHA256 over the raw body (header X-Edgevault-Signature:
sha256=<hex>, or -signature-header; with -timestamp-header the signature
covers "<unix time>.<body>"), or with -auth=bearer sent as "Authorization:
Bearer <secret>". -kind defaults to what the JSON looks like: a CloudEvent
(specversion), an Alertmanager webhook (version and alerts), or generic.
Use it to re-run an alert that was missed, or to try a rule for real.
` + exitCodesHelp,
		Example: `  edgevault events replay -source alertmanager -secret-file am.key alert.json
  edgevault events replay -source ci -kind cloudevents -secret-file ci.token -auth bearer event.json`,
		Args: argsBetween(1, 1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rr, err := buildReplay(f, args[0], e.stdin, os.ReadFile, time.Now())
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			c.api.ClearToken() // a sender proves itself with the source's secret only
			req := c.api.NewRequest(http.MethodPost, "/v1/"+rr.path)
			req.Params.Set("source", f.source)
			req.BodyBytes = rr.body
			if req.Headers == nil {
				req.Headers = http.Header{}
			}
			for k, v := range rr.headers {
				req.Headers[k] = v
			}
			// A raw request: the body must go out byte for byte (it is signed).
			resp, err := c.api.RawRequestWithContext(cmd.Context(), req)
			if resp != nil {
				defer resp.Body.Close()
			}
			if err != nil {
				return c.fail("replay "+args[0]+" to "+rr.path, err)
			}
			s, perr := api.ParseSecret(resp.Body)
			if perr != nil || s == nil {
				return c.success("Event posted to %s (HTTP %d)", rr.path, resp.StatusCode)
			}
			return c.printEventsData(s)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.source, "source", "", "the source the event is posted as (required)")
	fs.StringVar(&f.kind, "kind", "", "intake endpoint: alertmanager, cloudevents or generic (default: guessed from the JSON)")
	fs.StringVar(&f.secretFile, "secret-file", "", "file holding the source's secret (HMAC key or bearer token); - for standard input")
	fs.StringVar(&f.auth, "auth", "", "with -secret-file: hmac-sha256 (default) or bearer")
	fs.StringVar(&f.header, "signature-header", "", "header carrying the signature (default "+revoke.DefaultSignatureHeader+")")
	fs.StringVar(&f.tsHeader, "timestamp-header", "", "sign \"<unix time>.<body>\" and send the time in this header, as the source requires")
	return cmd
}
