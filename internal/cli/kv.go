package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
)

// kvPath is a secret's location: the mount of the KV v2 engine and the key
// inside it ("secret" and "app/db" for "secret/app/db").
type kvPath struct {
	mount string
	key   string
}

// api returns the HTTP API path of one of the engine's endpoints for the
// key, such as "secret/data/app/db" for kind "data".
func (p kvPath) api(kind string) string {
	if p.key == "" {
		return p.mount + "/" + kind
	}
	return p.mount + "/" + kind + "/" + p.key
}

// kvFlags are the flags every kv subcommand has.
type kvFlags struct {
	mount string
}

func (f *kvFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mount, "mount", "", `mount path of the KV v2 engine; PATH is then the key inside it (default: found from PATH)`)
}

// resolve splits the PATH argument into mount and key. With -mount, PATH is
// the key. Otherwise the server is asked where PATH is mounted
// (sys/internal/ui/mounts/PATH, as Vault's CLI does); if it cannot tell (403,
// 404), the first path segment is taken as the mount. needKey makes an empty
// key a usage error.
// open connects to the server and resolves arg to a mount and key.
func (f *kvFlags) open(ctx context.Context, e *env, cf *clientFlags, arg string, needKey bool) (*conn, kvPath, error) {
	c, err := cf.connect(e)
	if err != nil {
		return nil, kvPath{}, err
	}
	p, err := f.resolve(ctx, c, arg, needKey)
	return c, p, err
}

func (f *kvFlags) resolve(ctx context.Context, c *conn, arg string, needKey bool) (kvPath, error) {
	arg = strings.Trim(arg, "/")
	var p kvPath
	if f.mount != "" {
		p = kvPath{mount: strings.Trim(f.mount, "/"), key: arg}
		if p.mount == "" {
			return kvPath{}, usagef("-mount: empty mount path")
		}
	} else {
		if arg == "" {
			return kvPath{}, usagef("PATH: empty path")
		}
		var err error
		if p, err = c.lookupMount(ctx, arg); err != nil {
			return kvPath{}, err
		}
	}
	if needKey && p.key == "" {
		return kvPath{}, usagef("PATH %q names the mount %q but no key inside it", arg, p.mount)
	}
	return p, nil
}

// lookupMount asks the server which mount serves path and checks that it is
// a KV version 2 engine.
func (c *conn) lookupMount(ctx context.Context, path string) (kvPath, error) {
	fallback := func() kvPath {
		mount, key, _ := strings.Cut(path, "/")
		return kvPath{mount: mount, key: key}
	}
	s, err := c.api.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+path)
	var re *api.ResponseError
	if errors.As(err, &re) && (re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusNotFound) {
		return fallback(), nil
	}
	if err != nil {
		return kvPath{}, c.fail("find the mount of "+path, err)
	}
	if s == nil || s.Data == nil {
		return fallback(), nil
	}
	mount, _ := s.Data["path"].(string)
	mount = strings.Trim(mount, "/")
	if mount == "" || (path != mount && !strings.HasPrefix(path, mount+"/")) {
		return fallback(), nil
	}
	if typ, _ := s.Data["type"].(string); typ != "" && typ != "kv" {
		return kvPath{}, fmt.Errorf("%s: mount %q is a %q engine, not KV", path, mount, typ)
	}
	if opts, ok := s.Data["options"].(map[string]any); ok {
		if v, _ := opts["version"].(string); v == "1" {
			return kvPath{}, fmt.Errorf("%s: mount %q is KV version 1; edgevault kv works with version 2 only", path, mount)
		}
	}
	return kvPath{mount: mount, key: strings.Trim(strings.TrimPrefix(path, mount), "/")}, nil
}

func newKVCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("kv", "Read and write secrets in a KV version 2 engine",
		`Read and write secrets in a KV version 2 engine, as "vault kv" does.

PATH is the mount followed by the key ("secret/app/db" is the key "app/db" of the
engine mounted at "secret"), or just the key when -mount is given.`,
		newKVGetCmd(e, &cf),
		newKVPutCmd(e, &cf),
		newKVPatchCmd(e, &cf),
		newKVListCmd(e, &cf),
		newKVDeleteCmd(e, &cf),
		newKVVersionsCmd(e, &cf, "undelete", "Restore deleted versions of a secret", "undelete"),
		newKVVersionsCmd(e, &cf, "destroy", "Permanently remove versions of a secret", "destroy"),
		newKVMetadataCmd(e, &cf),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

func newKVGetCmd(e *env, cf *clientFlags) *cobra.Command {
	var (
		kf      kvFlags
		version int
		field   string
	)
	cmd := &cobra.Command{
		Use:   "get [-version=N] [-field=NAME] PATH",
		Short: "Read a secret (the latest version, or -version=N)",
		Long:  "Read a secret: its version metadata and its data.\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 0 {
				return usagef("-version %d: expected a positive version", version)
			}
			ctx := cmd.Context()
			c, p, err := kf.open(ctx, e, cf, args[0], true)
			if err != nil {
				return err
			}
			kv := c.api.KVv2(p.mount)
			var s *api.KVSecret
			if version > 0 {
				s, err = kv.GetVersion(ctx, p.key, version)
			} else {
				s, err = kv.Get(ctx, p.key)
			}
			if err != nil {
				return c.fail("read "+p.api("data"), err)
			}
			gone := kvGone(s)
			if field != "" {
				v, ok := s.Data[field]
				if !ok {
					if gone != "" {
						return fmt.Errorf("read %s: %s", p.api("data"), gone)
					}
					return fmt.Errorf("read %s: field %q not present in the secret", p.api("data"), field)
				}
				if c.json() {
					return printJSON(c.out, v)
				}
				return writeRawValue(c.out, v)
			}
			if c.json() {
				if err := printJSON(c.out, s.Raw); err != nil {
					return err
				}
			} else if err := printKVSecret(c.out, p, s.Raw); err != nil {
				return err
			}
			if gone != "" {
				return fmt.Errorf("read %s: %s", p.api("data"), gone)
			}
			return nil
		},
	}
	kf.register(cmd)
	cmd.Flags().IntVar(&version, "version", 0, "version to read (default: the latest)")
	cmd.Flags().StringVar(&field, "field", "", "print only this field of the data, without a trailing newline")
	return cmd
}

// kvGone says why a version read has no data ("version 3 is deleted"), or ""
// when it has data.
func kvGone(s *api.KVSecret) string {
	if s.Data != nil || s.VersionMetadata == nil {
		return ""
	}
	if s.VersionMetadata.Destroyed {
		return fmt.Sprintf("version %d is destroyed", s.VersionMetadata.Version)
	}
	return fmt.Sprintf("version %d is deleted (kv undelete restores it)", s.VersionMetadata.Version)
}

// printKVSecret prints a KV v2 read or write response as Vault does: the
// secret's API path, the version metadata and, for reads, the data.
func printKVSecret(w io.Writer, p kvPath, s *api.Secret) error {
	printHeader(w, "Secret Path", 2)
	fmt.Fprintf(w, "%s\n\n", p.api("data"))
	meta := s.Data
	data, isRead := s.Data["data"]
	if m, ok := s.Data["metadata"].(map[string]any); ok {
		meta = m
	}
	printHeader(w, "Metadata", 7)
	if err := printTable(w, mapRows(meta)); err != nil {
		return err
	}
	if m, ok := data.(map[string]any); ok && isRead {
		fmt.Fprintln(w)
		printHeader(w, "Data", 6)
		if err := printTable(w, mapRows(m)); err != nil {
			return err
		}
	}
	printWarnings(w, s.Warnings)
	return nil
}

// kvWriter is KVv2.Put or KVv2.Patch.
type kvWriter func(kv *api.KVv2, ctx context.Context, key string, data map[string]any, opts ...api.KVOption) (*api.KVSecret, error)

// writeKVData runs kv put or kv patch: -cas, the request, and the output.
func writeKVData(cmd *cobra.Command, e *env, cf *clientFlags, kf *kvFlags, path string, cas int, action string, write kvWriter, data map[string]any) error {
	var opts []api.KVOption
	if cmd.Flags().Changed("cas") {
		if cas < 0 {
			return usagef("-cas %d: expected 0 (create only) or the current version", cas)
		}
		opts = append(opts, api.WithCheckAndSet(cas))
	}
	ctx := cmd.Context()
	c, p, err := kf.open(ctx, e, cf, path, true)
	if err != nil {
		return err
	}
	s, err := write(c.api.KVv2(p.mount), ctx, p.key, data, opts...)
	if err != nil {
		return c.fail(action+" "+p.api("data"), err)
	}
	if c.json() {
		return printJSON(c.out, s.Raw)
	}
	return printKVSecret(c.out, p, s.Raw)
}

func newKVPutCmd(e *env, cf *clientFlags) *cobra.Command {
	var (
		kf  kvFlags
		cas int
	)
	cmd := &cobra.Command{
		Use:   "put [-cas=N] PATH KEY=VALUE...",
		Short: "Write a new version of a secret",
		Long: `Write a new version of a secret, replacing all its data.

Data is given as KEY=VALUE pairs. KEY=@FILE reads the value from a file and KEY=-
from standard input. A single "-" reads a JSON object from standard input, and
@FILE.json a JSON object from a file.

-cas=0 writes only if the secret does not exist yet; -cas=N only if its current
version is N.
` + exitCodesHelp,
		Args: argsBetween(2, -1, "PATH KEY=VALUE..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := parseKVData(args[1:], e.stdin, os.ReadFile)
			if err != nil {
				return err
			}
			return writeKVData(cmd, e, cf, &kf, args[0], cas, "write", (*api.KVv2).Put, data)
		},
	}
	kf.register(cmd)
	cmd.Flags().IntVar(&cas, "cas", 0, "check-and-set: 0 to create only, N to require current version N")
	return cmd
}

func newKVPatchCmd(e *env, cf *clientFlags) *cobra.Command {
	var (
		kf     kvFlags
		cas    int
		remove []string
	)
	cmd := &cobra.Command{
		Use:   "patch [-cas=N] [-remove=KEY] PATH [KEY=VALUE...]",
		Short: "Change some keys of a secret, keeping the others",
		Long: `Write a new version of a secret that changes only the given keys (a JSON merge
patch of the latest version). Values are given as for "kv put"; -remove=KEY
(repeatable) removes a key.
` + exitCodesHelp,
		Args: argsBetween(1, -1, "PATH KEY=VALUE..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := parseKVData(args[1:], e.stdin, os.ReadFile)
			if err != nil {
				return err
			}
			if data == nil {
				data = map[string]any{}
			}
			for _, k := range remove {
				if k == "" {
					return usagef("-remove: empty key")
				}
				data[k] = nil
			}
			if len(data) == 0 {
				return usagef("kv patch: nothing to change (give KEY=VALUE or -remove=KEY)")
			}
			return writeKVData(cmd, e, cf, &kf, args[0], cas, "patch", (*api.KVv2).Patch, data)
		},
	}
	kf.register(cmd)
	cmd.Flags().IntVar(&cas, "cas", 0, "check-and-set: require current version N")
	cmd.Flags().StringArrayVar(&remove, "remove", nil, "key to remove (repeatable)")
	return cmd
}

func newKVListCmd(e *env, cf *clientFlags) *cobra.Command {
	var kf kvFlags
	cmd := &cobra.Command{
		Use:   "list PATH",
		Short: "List the keys under a path",
		Long:  "List the keys under a path; names ending in / are folders.\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, p, err := kf.open(ctx, e, cf, args[0], false)
			if err != nil {
				return err
			}
			listPath := p.api("metadata")
			if p.key != "" {
				listPath += "/"
			}
			s, err := c.api.Logical().ListWithContext(ctx, listPath)
			if err != nil {
				return c.fail("list "+listPath, err)
			}
			var keys []string
			if s != nil {
				raw, _ := s.Data["keys"].([]any)
				for _, k := range raw {
					if ks, ok := k.(string); ok {
						keys = append(keys, ks)
					}
				}
			}
			if len(keys) == 0 {
				return fmt.Errorf("list %s: no keys found", listPath)
			}
			if c.json() {
				return printJSON(c.out, keys)
			}
			return printColumn(c.out, "Keys", keys)
		},
	}
	kf.register(cmd)
	return cmd
}

func newKVDeleteCmd(e *env, cf *clientFlags) *cobra.Command {
	var (
		kf       kvFlags
		versions []int
	)
	cmd := &cobra.Command{
		Use:   "delete [-versions=N,...] PATH",
		Short: "Delete the latest version of a secret, or the given versions",
		Long: `Delete (soft) the latest version of a secret, or the versions given with
-versions. "kv undelete" restores them; "kv destroy" removes them for good.
` + exitCodesHelp,
		Args: argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkVersions(versions, false); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, p, err := kf.open(ctx, e, cf, args[0], true)
			if err != nil {
				return err
			}
			kv := c.api.KVv2(p.mount)
			if len(versions) == 0 {
				if err := kv.Delete(ctx, p.key); err != nil {
					return c.fail("delete "+p.api("data"), err)
				}
				return c.success("Data deleted (if it existed) at: %s", p.api("data"))
			}
			if err := kv.DeleteVersions(ctx, p.key, versions); err != nil {
				return c.fail("delete "+p.api("delete"), err)
			}
			return c.success("Data deleted (if it existed) at: %s", p.api("delete"))
		},
	}
	kf.register(cmd)
	cmd.Flags().IntSliceVar(&versions, "versions", nil, "versions to delete, comma separated (default: the latest)")
	return cmd
}

// newKVVersionsCmd builds "kv undelete" and "kv destroy", which take the
// same arguments and differ only in the endpoint.
func newKVVersionsCmd(e *env, cf *clientFlags, name, short, endpoint string) *cobra.Command {
	var (
		kf       kvFlags
		versions []int
	)
	cmd := &cobra.Command{
		Use:   name + " -versions=N,... PATH",
		Short: short,
		Long:  short + " (the versions given with -versions).\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkVersions(versions, true); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, p, err := kf.open(ctx, e, cf, args[0], true)
			if err != nil {
				return err
			}
			kv := c.api.KVv2(p.mount)
			if endpoint == "destroy" {
				err = kv.Destroy(ctx, p.key, versions)
			} else {
				err = kv.Undelete(ctx, p.key, versions)
			}
			if err != nil {
				return c.fail(name+" "+p.api(endpoint), err)
			}
			return c.success("Data written to: %s", p.api(endpoint))
		},
	}
	kf.register(cmd)
	cmd.Flags().IntSliceVar(&versions, "versions", nil, "versions, comma separated (required)")
	return cmd
}

// checkVersions validates a -versions list: positive numbers, and at least
// one when required.
func checkVersions(versions []int, required bool) error {
	if required && len(versions) == 0 {
		return usagef("-versions: required (for example -versions=1,2)")
	}
	for _, v := range versions {
		if v <= 0 {
			return usagef("-versions: %d is not a version (versions start at 1)", v)
		}
	}
	return nil
}

func newKVMetadataCmd(e *env, cf *clientFlags) *cobra.Command {
	return newGroupCmd("metadata", "Read and change a secret's metadata",
		"Read and change a secret's metadata: its versions and settings.",
		newKVMetadataGetCmd(e, cf),
		newKVMetadataWriteCmd(e, cf, false),
		newKVMetadataWriteCmd(e, cf, true),
		newKVMetadataDeleteCmd(e, cf),
	)
}

func newKVMetadataGetCmd(e *env, cf *clientFlags) *cobra.Command {
	var kf kvFlags
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Show a secret's metadata and versions",
		Long:  "Show a secret's metadata and the state of each of its versions.\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, p, err := kf.open(ctx, e, cf, args[0], true)
			if err != nil {
				return err
			}
			// A plain read rather than KVv2.GetMetadata: the helper rewrites
			// the version entries, and -format=json shows what the server sent.
			s, err := c.api.Logical().ReadWithContext(ctx, p.api("metadata"))
			if err != nil {
				return c.fail("read "+p.api("metadata"), err)
			}
			if s == nil || s.Data == nil {
				return fmt.Errorf("read %s: no value found", p.api("metadata"))
			}
			if c.json() {
				return printJSON(c.out, s)
			}
			return printKVMetadata(c.out, p, s)
		},
	}
	kf.register(cmd)
	return cmd
}

// printKVMetadata prints a metadata response as Vault does: the settings,
// then one table per version, oldest first.
func printKVMetadata(w io.Writer, p kvPath, s *api.Secret) error {
	printHeader(w, "Secret Path", 3)
	fmt.Fprintf(w, "%s\n\n", p.api("metadata"))
	meta := make(map[string]any, len(s.Data))
	for k, v := range s.Data {
		if k != "versions" {
			meta[k] = v
		}
	}
	printHeader(w, "Metadata", 10)
	if err := printTable(w, mapRows(meta)); err != nil {
		return err
	}
	versions, _ := s.Data["versions"].(map[string]any)
	nums := make([]int, 0, len(versions))
	for k := range versions {
		if n, err := strconv.Atoi(k); err == nil {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	for _, n := range nums {
		v, _ := versions[strconv.Itoa(n)].(map[string]any)
		fmt.Fprintln(w)
		printHeader(w, "Version "+strconv.Itoa(n), 6)
		if err := printTable(w, mapRows(v)); err != nil {
			return err
		}
	}
	printWarnings(w, s.Warnings)
	return nil
}

// kvMetadataFlags are the settings "kv metadata put|patch" can change.
type kvMetadataFlags struct {
	maxVersions        int
	casRequired        bool
	deleteVersionAfter string
	customMetadata     []string
}

func newKVMetadataWriteCmd(e *env, cf *clientFlags, patch bool) *cobra.Command {
	var (
		kf kvFlags
		mf kvMetadataFlags
	)
	name, short, long := "put", "Set a secret's metadata",
		`Set a secret's metadata settings. Only the flags given are sent; with
-custom-metadata the whole custom metadata is replaced. A secret that does not
exist yet is created with no versions.`
	if patch {
		name, short, long = "patch", "Change some of a secret's metadata",
			`Change some of a secret's metadata settings (a JSON merge patch): flags not
given keep their value, and -custom-metadata keys are merged into the existing ones.`
	}
	cmd := &cobra.Command{
		Use:   name + " [-max-versions=N] [-cas-required] [-delete-version-after=D] [-custom-metadata=K=V...] PATH",
		Short: short,
		Long:  long + "\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			data := map[string]any{}
			if fl.Changed("max-versions") {
				if mf.maxVersions < 0 {
					return usagef("-max-versions %d: expected 0 (the mount's default) or more", mf.maxVersions)
				}
				data["max_versions"] = mf.maxVersions
			}
			if fl.Changed("cas-required") {
				data["cas_required"] = mf.casRequired
			}
			if fl.Changed("delete-version-after") {
				d, err := parseDuration("delete-version-after", mf.deleteVersionAfter)
				if err != nil {
					return err
				}
				data["delete_version_after"] = durationSeconds(d)
			}
			if fl.Changed("custom-metadata") {
				cm, err := parseStringMap("custom-metadata", mf.customMetadata)
				if err != nil {
					return err
				}
				data["custom_metadata"] = cm
			}
			if patch && len(data) == 0 {
				return usagef("kv metadata patch: nothing to change (give at least one flag)")
			}
			ctx := cmd.Context()
			c, p, err := kf.open(ctx, e, cf, args[0], true)
			if err != nil {
				return err
			}
			// The KVv2 helpers send every field (PutMetadata resets the ones
			// not given); like Vault's CLI, only the flags given are sent.
			if patch {
				_, err = c.api.Logical().JSONMergePatch(ctx, p.api("metadata"), data)
			} else {
				_, err = c.api.Logical().WriteWithContext(ctx, p.api("metadata"), data)
			}
			if err != nil {
				return c.fail(name+" "+p.api("metadata"), err)
			}
			return c.success("Data written to: %s", p.api("metadata"))
		},
	}
	kf.register(cmd)
	fl := cmd.Flags()
	fl.IntVar(&mf.maxVersions, "max-versions", 0, "number of versions to keep (0: the mount's setting)")
	fl.BoolVar(&mf.casRequired, "cas-required", false, "require -cas on every write")
	fl.StringVar(&mf.deleteVersionAfter, "delete-version-after", "", "delete versions this long after they are written (0s: never)")
	fl.StringArrayVar(&mf.customMetadata, "custom-metadata", nil, "custom metadata KEY=VALUE (repeatable)")
	return cmd
}

func newKVMetadataDeleteCmd(e *env, cf *clientFlags) *cobra.Command {
	var kf kvFlags
	cmd := &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete a secret with all its versions and metadata",
		Long:  "Delete a secret with all its versions and metadata, for good.\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, p, err := kf.open(ctx, e, cf, args[0], true)
			if err != nil {
				return err
			}
			if err := c.api.KVv2(p.mount).DeleteMetadata(ctx, p.key); err != nil {
				return c.fail("delete "+p.api("metadata"), err)
			}
			return c.success("Data deleted (if it existed) at: %s", p.api("metadata"))
		},
	}
	kf.register(cmd)
	return cmd
}

// parseKVData parses the data arguments of "kv put" and "kv patch" as Vault
// does: KEY=VALUE, KEY=@FILE (the file's content), KEY=- (standard input),
// "-" (a JSON object on standard input) and @FILE (a JSON object in a file).
// Later keys win. Standard input can be read once. It returns nil for no
// arguments. Malformed arguments are usage errors; unreadable files are not.
func parseKVData(args []string, stdin io.Reader, readFile func(string) ([]byte, error)) (map[string]any, error) {
	if len(args) == 0 {
		return nil, nil
	}
	stdinUsed := false
	readStdin := func(what string) ([]byte, error) {
		if stdinUsed {
			return nil, usagef("%s: standard input can be used only once", what)
		}
		stdinUsed = true
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("%s: read standard input: %w", what, err)
		}
		return b, nil
	}
	data := make(map[string]any, len(args))
	for i, arg := range args {
		switch {
		case arg == "-":
			b, err := readStdin(`"-"`)
			if err != nil {
				return nil, err
			}
			if err := mergeJSONObject(data, b, "standard input"); err != nil {
				return nil, err
			}
		case strings.HasPrefix(arg, "@"):
			name := arg[1:]
			if name == "" {
				return nil, usagef("%q: expected @FILE", arg)
			}
			b, err := readFile(name)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", arg, err)
			}
			if err := mergeJSONObject(data, b, name); err != nil {
				return nil, err
			}
		default:
			k, v, err := splitKeyValue(arg)
			if err != nil {
				return nil, usagef("data argument %d: %v", i+1, err)
			}
			switch {
			case v == "-":
				b, err := readStdin(k + "=-")
				if err != nil {
					return nil, err
				}
				data[k] = string(b)
			case strings.HasPrefix(v, "@"):
				if len(v) == 1 {
					return nil, usagef("%s=@: expected a file name after @", k)
				}
				b, err := readFile(v[1:])
				if err != nil {
					return nil, fmt.Errorf("%s=%s: %w", k, v, err)
				}
				data[k] = string(b)
			default:
				data[k] = v
			}
		}
	}
	return data, nil
}

// mergeJSONObject decodes b, which must hold exactly one JSON object, into
// data. Numbers keep their exact text.
func mergeJSONObject(data map[string]any, b []byte, source string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return usagef("%s: expected a JSON object: %v", source, err)
	}
	if obj == nil {
		return usagef("%s: expected a JSON object, got null", source)
	}
	if _, err := dec.Token(); err != io.EOF {
		return usagef("%s: expected one JSON object, found trailing data", source)
	}
	for k, v := range obj {
		data[k] = v
	}
	return nil
}
