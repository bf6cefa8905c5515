package cli

// This file holds "edgevault audit": the audit devices (list, enable,
// disable, hash, as Vault's CLI has them) and the transparency log's tools:
// checkpoint (fetch, verify and witness), prove, disclose, verify-bundle,
// verify (the whole log against the file device) and tail.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/audit/tlog"
)

func newAuditCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("audit", "Manage audit devices and verify the transparency log",
		`Manage the audit devices and check the audit trail. Every request and
response is written to a file (Vault's file audit format) and to a
transparency log whose signed checkpoints, proofs and disclosure bundles
anyone holding the log's verifier key can check.`,
		newAuditListCmd(e, &cf),
		newAuditEnableCmd(e, &cf),
		newAuditDisableCmd(e, &cf),
		newAuditHashCmd(e, &cf),
		newAuditCheckpointCmd(e, &cf),
		newAuditProveCmd(e, &cf),
		newAuditDiscloseCmd(e, &cf),
		newAuditVerifyBundleCmd(e),
		newAuditVerifyCmd(e),
		newAuditTailCmd(e),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

func newAuditListCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the enabled audit devices",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			devs, err := c.api.Sys().ListAuditWithContext(cmd.Context())
			if err != nil {
				return c.fail("list audit devices", err)
			}
			if c.json() {
				return printJSON(c.out, devs)
			}
			paths := make([]string, 0, len(devs))
			for p := range devs {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			tw := tabwriter.NewWriter(c.out, 0, 2, 4, ' ', 0)
			fmt.Fprintln(tw, "Path\tType\tDescription\tOptions")
			fmt.Fprintln(tw, "----\t----\t-----------\t-------")
			for _, p := range paths {
				d := devs[p]
				var opts []string
				for k, v := range d.Options {
					opts = append(opts, k+"="+v)
				}
				sort.Strings(opts)
				desc := d.Description
				if desc == "" {
					desc = "n/a"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p, d.Type, desc, strings.Join(opts, " "))
			}
			return tw.Flush()
		},
	}
}

func newAuditEnableCmd(e *env, cf *clientFlags) *cobra.Command {
	var path, desc string
	cmd := &cobra.Command{
		Use:   "enable TYPE [K=V...]",
		Short: `Enable an audit device: "file file_path=..." or "tlog path=DIR"`,
		Args:  argsBetween(1, -1, "TYPE and its options as K=V"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := map[string]string{}
			var check error
			for _, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					check = usagef("option %q: expected K=V", kv)
				}
				opts[k] = v
			}
			c, err := cf.connectAfter(e, check)
			if err != nil {
				return err
			}
			if path == "" {
				path = args[0]
			}
			err = c.api.Sys().EnableAuditWithOptionsWithContext(cmd.Context(), path, &api.EnableAuditOptions{Type: args[0], Description: desc, Options: opts})
			if err != nil {
				return c.fail("enable audit device", err)
			}
			return c.success("Enabled the %s audit device at: %s/", args[0], strings.Trim(path, "/"))
		},
	}
	cmd.Flags().StringVar(&path, "path", "", "where to enable the device (default: its type)")
	cmd.Flags().StringVar(&desc, "description", "", "a description shown by audit list")
	return cmd
}

func newAuditDisableCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "disable PATH",
		Short: "Disable the audit device at PATH",
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			if err := c.api.Sys().DisableAuditWithContext(cmd.Context(), args[0]); err != nil {
				return c.fail("disable audit device", err)
			}
			return c.success("Disabled audit device (if it was enabled) at: %s/", strings.Trim(args[0], "/"))
		},
	}
}

func newAuditHashCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "hash PATH INPUT",
		Short: "Show how INPUT appears in the entries of the device at PATH (its HMAC)",
		Args:  argsBetween(2, 2, "PATH and INPUT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			h, err := c.api.Sys().AuditHashWithContext(cmd.Context(), strings.Trim(args[0], "/"), args[1])
			if err != nil {
				return c.fail("hash", err)
			}
			if c.json() {
				return printJSON(c.out, map[string]string{"hash": h})
			}
			_, err = fmt.Fprintln(c.out, h)
			return err
		},
	}
}

// loadVerifier reads a note verifier key given inline ("name+hash+base64")
// or as a file holding one.
func loadVerifier(key string) (note.Verifier, error) {
	if key == "" {
		return nil, usagef("-key: the log's verifier key is required (edgevault audit checkpoint -format=json shows the server's; take it from a trusted source)")
	}
	text := key
	if !strings.Contains(key, "+") {
		raw, err := os.ReadFile(key)
		if err != nil {
			return nil, usagef("-key %q: neither a verifier key nor a readable file: %v", key, err)
		}
		text = strings.TrimSpace(string(raw))
	}
	v, err := note.NewVerifier(text)
	if err != nil {
		return nil, usagef("-key: not a verifier key (name+hash+base64): %v", err)
	}
	return v, nil
}

// getRaw GETs path and returns the body, turning an error answer into the
// usual one-line error.
func (c *conn) getRaw(ctx context.Context, path string, query map[string][]string) ([]byte, error) {
	resp, err := c.api.Logical().ReadRawWithDataWithContext(ctx, path, query)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	return io.ReadAll(resp.Body)
}

// verifiedCheckpoint fetches the log's checkpoint and checks its signature.
func (c *conn) verifiedCheckpoint(ctx context.Context, v note.Verifier) (tlog.Checkpoint, error) {
	raw, err := c.getRaw(ctx, "sys/audit-log/checkpoint", nil)
	if err != nil {
		return tlog.Checkpoint{}, c.fail("fetch the checkpoint", err)
	}
	cp, err := tlog.ParseCheckpoint(raw, v)
	if err != nil {
		return tlog.Checkpoint{}, fmt.Errorf("checkpoint from %s: %w", c.addr, err)
	}
	return cp, nil
}

// witnessState is what the CLI remembers of the last checkpoint it verified.
type witnessState struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Hash   string `json:"root_hash"`
}

// statePath is where the witness keeps what it saw of the log signed by v:
// keyed by the key, so a server cannot reset it by changing its origin.
func statePath(e *env, flag string, v note.Verifier) string {
	if flag != "" {
		return flag
	}
	dir := firstSet(e.getenv("EDGEVAULT_STATE_DIR"), filepath.Join(firstSet(e.getenv("HOME"), os.TempDir()), ".edgevault"))
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())))
	return filepath.Join(dir, "audit-checkpoint-"+hex.EncodeToString(sum[:8])+".json")
}

func newAuditCheckpointCmd(e *env, cf *clientFlags) *cobra.Command {
	var key, state string
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Fetch the log's signed checkpoint, verify it, and check it extends the last one seen",
		Long: `Fetch the transparency log's checkpoint, check its signature with -key,
and, when a checkpoint of this log was seen before (kept in -state), check
that the log only grew: the server must prove the old tree is a prefix of the
new one. The new checkpoint is then remembered. Run it from cron, or from
several places, to witness the log.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, verr := loadVerifier(key)
			c, err := cf.connectAfter(e, verr)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cp, err := c.verifiedCheckpoint(ctx, v)
			if err != nil {
				return err
			}
			path := statePath(e, state, v)
			var old witnessState
			raw, err := os.ReadFile(path)
			switch {
			case err == nil:
				if err := json.Unmarshal(raw, &old); err != nil {
					return fmt.Errorf("witness state %s: %w", path, err)
				}
			case !errors.Is(err, os.ErrNotExist):
				return fmt.Errorf("witness state: %w", err)
			}
			result := "first checkpoint seen of this log"
			if old.Origin != "" && old.Origin != cp.Origin {
				return fmt.Errorf("the log signed by %s changed its origin from %q to %q: a different log under the same key", v.Name(), old.Origin, cp.Origin)
			}
			if old.Origin != "" {
				oldHash, err := sumtlog.ParseHash(old.Hash)
				if err != nil {
					return fmt.Errorf("witness state %s: %w", path, err)
				}
				if err := c.checkConsistency(ctx, old.Size, oldHash, cp); err != nil {
					return err
				}
				result = fmt.Sprintf("consistent with the checkpoint seen before (size %d)", old.Size)
			}
			if cp.Size >= old.Size {
				if err := writeState(path, witnessState{Origin: cp.Origin, Size: cp.Size, Hash: cp.Hash.String()}); err != nil {
					return err
				}
			}
			if c.json() {
				return printJSON(c.out, map[string]any{"origin": cp.Origin, "size": cp.Size, "root_hash": cp.Hash.String(),
					"previous_size": old.Size, "result": result, "checkpoint": string(cp.Signed)})
			}
			_, err = fmt.Fprintf(c.out, "Origin:     %s\nTree size:  %d\nRoot hash:  %s\nSignature:  valid (%s)\nWitness:    %s\n",
				cp.Origin, cp.Size, cp.Hash, v.Name(), result)
			return err
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	cmd.Flags().StringVar(&state, "state", "", "where the last verified checkpoint is kept (default ~/.edgevault/audit-checkpoint-*.json)")
	return cmd
}

// checkConsistency proves the tree (oldSize, oldHash) is a prefix of cp.
func (c *conn) checkConsistency(ctx context.Context, oldSize uint64, oldHash sumtlog.Hash, cp tlog.Checkpoint) error {
	switch {
	case cp.Size < oldSize:
		return fmt.Errorf("the log shrank: it had %d entries, its checkpoint now says %d: the log was rewritten", oldSize, cp.Size)
	case cp.Size == oldSize:
		if cp.Hash != oldHash {
			return fmt.Errorf("the log forked: size %d had root %s, now %s", oldSize, oldHash, cp.Hash)
		}
		return nil
	case oldSize == 0:
		return nil
	}
	raw, err := c.getRaw(ctx, "sys/audit-log/consistency", map[string][]string{
		"old": {strconv.FormatUint(oldSize, 10)}, "new": {strconv.FormatUint(cp.Size, 10)}})
	if err != nil {
		return c.fail("fetch a consistency proof", err)
	}
	proof, err := proofFrom(raw)
	if err != nil {
		return err
	}
	if err := sumtlog.CheckTree(sumtlog.TreeProof(proof), int64(cp.Size), cp.Hash, int64(oldSize), oldHash); err != nil {
		return fmt.Errorf("the log is not an extension of the checkpoint seen before (size %d): %w", oldSize, err)
	}
	return nil
}

// proofFrom reads "proof" (base64 hashes) from a JSON answer.
func proofFrom(raw []byte) ([]sumtlog.Hash, error) {
	var body struct {
		Data struct {
			Proof []string `json:"proof"`
			Leaf  string   `json:"leaf"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("decode the proof: %w", err)
	}
	out := make([]sumtlog.Hash, len(body.Data.Proof))
	for i, p := range body.Data.Proof {
		b, err := base64.StdEncoding.DecodeString(p)
		if err != nil || len(b) != sumtlog.HashSize {
			return nil, fmt.Errorf("proof hash %d is not a base64 SHA-256 hash", i)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

func writeState(path string, st witnessState) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	raw, _ := json.MarshalIndent(st, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	return os.Rename(tmp, path)
}

func newAuditProveCmd(e *env, cf *clientFlags) *cobra.Command {
	var key string
	var index int64 = -1
	cmd := &cobra.Command{
		Use:   "prove -index N",
		Short: "Prove that entry N is in the log, against a verified checkpoint",
		Args:  argsBetween(0, 0, "no arguments; give -index"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, check := loadVerifier(key)
			if index < 0 {
				check = usagef("-index: required, a log index (0 or more)")
			}
			c, err := cf.connectAfter(e, check)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cp, err := c.verifiedCheckpoint(ctx, v)
			if err != nil {
				return err
			}
			if uint64(index) >= cp.Size {
				return fmt.Errorf("-index %d: the latest checkpoint covers %d entries; wait for the next one", index, cp.Size)
			}
			raw, err := c.getRaw(ctx, "sys/audit-log/inclusion", map[string][]string{
				"index": {strconv.FormatInt(index, 10)}, "size": {strconv.FormatUint(cp.Size, 10)}})
			if err != nil {
				return c.fail("fetch the inclusion proof", err)
			}
			proof, err := proofFrom(raw)
			if err != nil {
				return err
			}
			var body struct {
				Data struct {
					Leaf string `json:"leaf"`
				} `json:"data"`
			}
			_ = json.Unmarshal(raw, &body)
			lf, err := base64.StdEncoding.DecodeString(body.Data.Leaf)
			if err != nil || len(lf) == 0 {
				return errors.New("the server sent no leaf with the proof")
			}
			leafHash := sumtlog.RecordHash(lf)
			if err := sumtlog.CheckRecord(sumtlog.RecordProof(proof), int64(cp.Size), cp.Hash, index, leafHash); err != nil {
				return fmt.Errorf("entry %d: the inclusion proof does not lead to the checkpoint's root: %w", index, err)
			}
			fields, err := leaf.ParseLeaf(lf)
			if err != nil {
				return fmt.Errorf("entry %d: %w", index, err)
			}
			if c.json() {
				return printJSON(c.out, map[string]any{"index": index, "tree_size": cp.Size, "root_hash": cp.Hash.String(),
					"leaf_hash": leafHash.String(), "proof": hashList(proof), "fields": len(fields), "verified": true})
			}
			fmt.Fprintf(c.out, "Entry %d is in the log %s of size %d (root %s).\nLeaf hash: %s (%d fields committed)\nProof:\n", index, cp.Origin, cp.Size, cp.Hash, leafHash, len(fields))
			for _, h := range proof {
				fmt.Fprintf(c.out, "  %s\n", h)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&index, "index", -1, "the entry's log index")
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	return cmd
}

func hashList(hs []sumtlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}

func newAuditDiscloseCmd(e *env, cf *clientFlags) *cobra.Command {
	var fields, out string
	var index int64 = -1
	cmd := &cobra.Command{
		Use:   "disclose -index N -fields F1,F2",
		Short: "Write a bundle that shows only the chosen fields of entry N, with a proof",
		Long: `Ask the server for a disclosure bundle of log entry N: the chosen fields
(e.g. time,request.path,auth.display_name; "auth" means every auth.* field)
with their salts, the other fields' digests only, an inclusion proof and the
signed checkpoint. Give it to an auditor, who checks it offline with
"edgevault audit verify-bundle FILE -key KEY". Needs sudo on sys/audit-log/disclose.`,
		Args: argsBetween(0, 0, "no arguments; give -index and -fields"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var check error
			var names []string
			for _, f := range strings.Split(fields, ",") {
				if f = strings.TrimSpace(f); f != "" {
					names = append(names, f)
				}
			}
			switch {
			case index < 0:
				check = usagef("-index: required, a log index (0 or more)")
			case len(names) == 0:
				check = usagef("-fields: name the fields to disclose, e.g. -fields time,request.path")
			}
			c, err := cf.connectAfter(e, check)
			if err != nil {
				return err
			}
			s, err := c.api.Logical().WriteWithContext(cmd.Context(), "sys/audit-log/disclose", map[string]any{"index": index, "fields": names})
			if err != nil {
				return c.fail("disclose", err)
			}
			if s == nil || s.Data["bundle"] == nil {
				return errors.New("disclose: the server sent no bundle")
			}
			raw, err := json.MarshalIndent(s.Data["bundle"], "", "  ")
			if err != nil {
				return err
			}
			raw = append(raw, '\n')
			if out == "" || out == "-" {
				_, err = c.out.Write(raw)
				return err
			}
			if err := os.WriteFile(out, raw, 0o600); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.out, "Wrote the bundle of entry %d (%s) to %s\n", index, strings.Join(names, ", "), out)
			return err
		},
	}
	cmd.Flags().Int64Var(&index, "index", -1, "the entry's log index")
	cmd.Flags().StringVar(&fields, "fields", "", "comma-separated field names to disclose")
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the bundle to (default: standard output)")
	return cmd
}

func newAuditVerifyBundleCmd(e *env) *cobra.Command {
	var key, format string
	cmd := &cobra.Command{
		Use:   "verify-bundle FILE -key KEY",
		Short: "Check a disclosure bundle offline: fields, proof and checkpoint signature",
		Args:  argsBetween(1, 1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadVerifier(key)
			if err != nil {
				return err
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var b leaf.Bundle
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b); err != nil {
				return fmt.Errorf("%s: not a disclosure bundle: %w", args[0], err)
			}
			got, err := leaf.VerifyBundle(&b, v)
			if err != nil {
				return fmt.Errorf("%s: NOT VERIFIED: %w", args[0], err)
			}
			if format == formatJSON {
				return printJSON(e.stdout, got)
			}
			w := e.stdout
			fmt.Fprintf(w, "Verified: entry %d is in log %s of size %d, signed by %s.\n", got.Index, got.Origin, got.TreeSize, v.Name())
			if got.Signer != nil {
				fmt.Fprintf(w, "Signer: %s (signature by its key valid; the identity is vouched for by the log)\n", got.Signer.ID)
			}
			fmt.Fprintln(w, "Disclosed fields:")
			tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
			for _, f := range got.Fields {
				fmt.Fprintf(tw, "  %s\t%s\n", f.Name, f.Value)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	cmd.Flags().StringVar(&format, "format", formatTable, `output format: "table" or "json"`)
	return cmd
}

func newAuditVerifyCmd(e *env) *cobra.Command {
	var key, logDir, format string
	var files []string
	var from int64
	cmd := &cobra.Command{
		Use:   "verify -log DIR -file FILE... -key KEY",
		Short: "Re-read the whole log and the audit files; report missing, extra, reordered or altered entries",
		Long: `Check the transparency log in -log (the tlog device's directory) entry by
entry — checkpoint signature, every tile, every leaf recomputed from the entry
it commits to — and compare it with the file device's files (-file, rotated
files first, in order), which must hold every entry from -from on (default 0,
the whole log; when older files were rotated away, the index the first given
file starts at). Runs offline, on the server's host or on a copy.
Exit code 1 when anything is wrong.`,
		Args: argsBetween(0, 0, "no arguments; give -log, -file and -key"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadVerifier(key)
			if err != nil {
				return err
			}
			if logDir == "" {
				return usagef("-log: the tlog device's directory is required")
			}
			if from < 0 {
				return usagef("-from %d: must not be negative", from)
			}
			rep, err := audit.Verify(logDir, v, files, from)
			if err != nil {
				return err
			}
			if format == formatJSON {
				if err := printJSON(e.stdout, rep); err != nil {
					return err
				}
			} else {
				w := e.stdout
				fmt.Fprintf(w, "Log: %d entries, %d covered by the signed checkpoint.\n", rep.LogSize, rep.Checkpoint)
				if len(files) > 0 {
					fmt.Fprintf(w, "Files: %d lines, from log entry %d.\n", rep.Lines, rep.First)
				}
				for _, p := range rep.Problems {
					fmt.Fprintf(w, "  %-9s %s\n", strings.ToUpper(p.Kind), p.Detail)
				}
				switch {
				case rep.OK() && len(files) == 0:
					fmt.Fprintln(w, "OK: the log verifies (no audit file given to compare).")
				case rep.OK():
					fmt.Fprintf(w, "OK: the log verifies and the files hold exactly its entries from %d on, in order.\n", from)
				}
			}
			if !rep.OK() {
				return fmt.Errorf("audit verify: %d problems found", len(rep.Problems))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or a file holding it")
	cmd.Flags().StringVar(&logDir, "log", "", "the tlog device's directory")
	cmd.Flags().StringSliceVar(&files, "file", nil, "the file device's files, oldest first (repeat or comma-separate)")
	cmd.Flags().Int64Var(&from, "from", 0, "the log index the first file starts at (older files rotated away)")
	cmd.Flags().StringVar(&format, "format", formatTable, `output format: "table" or "json"`)
	return cmd
}

func newAuditTailCmd(e *env) *cobra.Command {
	var n int
	var follow bool
	var format string
	cmd := &cobra.Command{
		Use:   "tail FILE",
		Short: "Show the last entries of an audit file, one line each; -f follows it",
		Args:  argsBetween(1, 1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 0 {
				return usagef("-n %d: must not be negative", n)
			}
			return tailAudit(cmd.Context(), e.stdout, args[0], n, follow, format == formatJSON)
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 10, "how many of the last entries to show")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new entries (follows logrotate)")
	cmd.Flags().StringVar(&format, "format", formatTable, `output format: "table" (one summary line each) or "json" (the entries)`)
	return cmd
}

// tailAudit prints the last n entries of path, then follows it.
func tailAudit(ctx context.Context, w io.Writer, path string, n int, follow, raw bool) error {
	var last [][]byte
	err := audit.ReadLines(path, func(line []byte, complete bool) error {
		if complete {
			last = append(last, bytes.Clone(line))
			if len(last) > n {
				last = last[1:]
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range last {
		printAuditLine(w, l, raw)
	}
	if !follow {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	off, _ := f.Seek(0, io.SeekEnd)
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		if st, err := os.Stat(path); err == nil {
			if cur, err := f.Stat(); err == nil && !os.SameFile(st, cur) {
				// Rotated: finish the old file, then start on the new one.
				rest, _ := io.ReadAll(f)
				buf = emitLines(w, append(buf, rest...), raw)
				f.Close()
				if f, err = os.Open(path); err != nil {
					return err
				}
				off = 0
			}
		}
		chunk := make([]byte, 64<<10)
		for {
			k, err := f.ReadAt(chunk, off)
			buf = append(buf, chunk[:k]...)
			off += int64(k)
			if err != nil || k == 0 {
				break
			}
		}
		buf = emitLines(w, buf, raw)
	}
}

func emitLines(w io.Writer, buf []byte, raw bool) []byte {
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return buf
		}
		printAuditLine(w, buf[:i], raw)
		buf = buf[i+1:]
	}
}

// printAuditLine prints one entry: raw JSON, or a summary line.
func printAuditLine(w io.Writer, line []byte, raw bool) {
	if raw {
		fmt.Fprintf(w, "%s\n", line)
		return
	}
	var e struct {
		Time string `json:"time"`
		Type string `json:"type"`
		Auth struct {
			DisplayName string `json:"display_name"`
		} `json:"auth"`
		Request struct {
			Operation string `json:"operation"`
			Path      string `json:"path"`
			Namespace struct {
				ID string `json:"id"`
			} `json:"namespace"`
			RemoteAddress string `json:"remote_address"`
		} `json:"request"`
		Response struct {
			StatusCode int `json:"status_code"`
		} `json:"response"`
		Signer struct {
			ID string `json:"id"`
		} `json:"signer"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		fmt.Fprintf(w, "(not an audit entry: %v)\n", err)
		return
	}
	who := e.Auth.DisplayName
	if e.Signer.ID != "" {
		who = e.Signer.ID
	}
	if who == "" {
		who = "-"
	}
	status := ""
	if e.Response.StatusCode != 0 {
		status = " " + strconv.Itoa(e.Response.StatusCode)
	}
	msg := ""
	if e.Error != "" {
		msg = "  error: " + e.Error
	}
	fmt.Fprintf(w, "%s %-8s %-6s %s zone=%s by=%s from=%s%s%s\n", e.Time, e.Type, e.Request.Operation, e.Request.Path,
		e.Request.Namespace.ID, who, e.Request.RemoteAddress, status, msg)
}
