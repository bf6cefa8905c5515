package cli

// This file holds "edgevault zone": the management of trust zones through
// the sys/zones endpoints of the root zone. A zone is an isolated tenant with
// its own data keys, tokens, policies and mounts; clients act inside one by
// sending its name as the namespace (-namespace, EDGEVAULT_NAMESPACE).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
)

// rootZoneArg names the root zone in "zone map" and in the blast-radius
// endpoint (sys/zones/-/blast-radius).
const rootZoneArg = "-"

// zoneReadTimeout bounds the raw reads, which do not use the client's timeout.
const zoneReadTimeout = 60 * time.Second

func newZoneCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("zone", "Create, inspect, rotate and delete trust zones",
		`Manage trust zones: isolated tenants with their own data keys, tokens,
policies and mounts. Zones are managed from the root zone with a root (sudo)
token; to act inside a zone, set EDGEVAULT_NAMESPACE=NAME (or -namespace=NAME)
and use a token of that zone, such as one from "zone root-token NAME".`,
		newZoneCreateCmd(e, &cf),
		newZoneReadCmd(e, &cf),
		newZoneListCmd(e, &cf),
		newZoneDeleteCmd(e, &cf),
		newZoneRotateCmd(e, &cf),
		newZoneKeyStatusCmd(e, &cf),
		newZoneRootTokenCmd(e, &cf),
		newZoneMapCmd(e, &cf),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

// checkZoneName refuses an empty zone name; the server checks the rest.
func checkZoneName(name string) error {
	if strings.TrimSpace(name) == "" {
		return usagef("NAME: empty zone name")
	}
	return nil
}

// zoneFail is conn.fail with another hint when a namespace is set: sys/zones
// exists only in the root zone (404 from inside a zone) and tokens act only
// in their own zone (403 for a root-zone token sent to a zone).
func (c *conn) zoneFail(action string, err error) error {
	out := c.fail(action, err)
	var re *api.ResponseError
	if ns := c.api.Namespace(); ns != "" && errors.As(err, &re) &&
		(re.StatusCode == http.StatusNotFound || re.StatusCode == http.StatusForbidden) {
		var h hintError
		if errors.As(out, &h) {
			out = h.error
		}
		return hintError{out, fmt.Sprintf("zones are managed from the root zone with a root-zone token, not from namespace %q: unset EDGEVAULT_NAMESPACE and -namespace", ns)}
	}
	return out
}

// readRaw reads path (lists it with list) and keeps the server's error on a
// 404: the api client's Read and List turn a 404 into "no data", losing
// messages such as "zone does not exist".
func (c *conn) readRaw(ctx context.Context, path string, list bool) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, zoneReadTimeout)
	defer cancel()
	var query map[string][]string
	if list {
		query = map[string][]string{"list": {"true"}}
	}
	resp, err := c.api.Logical().ReadRawWithDataWithContext(ctx, path, query)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	s, err := api.ParseSecret(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("decode the response: %w", err)
	}
	if s == nil {
		return nil, errors.New("the server returned no data")
	}
	return s, nil
}

// zoneCreateFlags are the flags of "zone create".
type zoneCreateFlags struct {
	description string
	labels      []string
	parent      string
}

// body validates the flags and builds the request body.
func (f *zoneCreateFlags) body() (map[string]any, error) {
	labels, err := parseStringMap("label", f.labels)
	if err != nil {
		return nil, err
	}
	body := map[string]any{}
	if f.description != "" {
		body["description"] = f.description
	}
	if labels != nil {
		body["labels"] = labels
	}
	if f.parent != "" {
		body["parent"] = f.parent
	}
	return body, nil
}

func newZoneCreateCmd(e *env, cf *clientFlags) *cobra.Command {
	var f zoneCreateFlags
	cmd := &cobra.Command{
		Use:   "create NAME [-description=TEXT] [-label=KEY=VALUE...] [-parent=ZONE]",
		Short: "Create a zone",
		Long: `Create the zone NAME with its own data key, a default policy and a KV v2
engine at secret/. -label attaches KEY=VALUE labels (repeatable); -parent names
the zone it belongs under. The zone has no token yet: get its first one with
"zone root-token NAME".
` + exitCodesHelp,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkZoneName(name); err != nil {
				return err
			}
			body, err := f.body()
			if err != nil {
				return err
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			s, err := c.api.Logical().WriteWithContext(cmd.Context(), "sys/zones/"+name, body)
			if err != nil {
				return c.zoneFail("create zone "+name, err)
			}
			if s == nil || s.Data == nil {
				return c.success("Created zone: %s", name)
			}
			return c.printZone(s)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.description, "description", "", "what the zone is for")
	fl.StringArrayVar(&f.labels, "label", nil, "label KEY=VALUE (repeatable)")
	fl.StringVar(&f.parent, "parent", "", "zone this one belongs under")
	return cmd
}

// printZone prints a zone: JSON as the server sent it, or a table with the
// labels as sorted KEY=VALUE pairs.
func (c *conn) printZone(s *api.Secret) error {
	if c.json() {
		return printJSON(c.out, s)
	}
	data := make(map[string]any, len(s.Data))
	for k, v := range s.Data {
		data[k] = v
	}
	if m, ok := data["labels"].(map[string]any); ok {
		pairs := make([]string, 0, len(m))
		for k, v := range m {
			pairs = append(pairs, fmt.Sprintf("%s=%v", k, v))
		}
		sort.Strings(pairs)
		data["labels"] = strings.Join(pairs, ",")
	}
	if err := printTable(c.out, mapRows(data)); err != nil {
		return err
	}
	printWarnings(c.out, s.Warnings)
	return nil
}

func newZoneReadCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "read NAME",
		Short: "Show a zone's description, labels, parent and creation time",
		Long:  "Show the zone NAME: description, labels, parent and creation time.\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := cf.connectAfter(e, checkZoneName(name))
			if err != nil {
				return err
			}
			s, err := c.readRaw(cmd.Context(), "sys/zones/"+name, false)
			if err != nil {
				return c.zoneFail("read zone "+name, err)
			}
			return c.printZone(s)
		},
	}
}

// listZones returns the zone names, without the trailing "/" of the LIST
// answer; none when the server has no zone.
func (c *conn) listZones(ctx context.Context) ([]string, error) {
	s, err := c.readRaw(ctx, "sys/zones", true)
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && len(re.Errors) == 0 {
		return nil, nil // a 404 without a message: no zones
	}
	if err != nil {
		return nil, c.zoneFail("list zones", err)
	}
	if s.Data == nil {
		return nil, nil
	}
	keys, ok := s.Data["keys"].([]any)
	if !ok {
		return nil, errors.New("list zones: the server's answer has no list of keys")
	}
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		n, ok := k.(string)
		if !ok {
			return nil, errors.New("list zones: the server's answer has a key that is not a string")
		}
		names = append(names, strings.TrimSuffix(n, "/"))
	}
	return names, nil
}

func newZoneListCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the zone names",
		Long:  "List the names of all zones, one per line (the root zone is not listed).\n" + exitCodesHelp,
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			names, err := c.listZones(cmd.Context())
			if err != nil {
				return err
			}
			return c.printNames(names)
		},
	}
}

func newZoneDeleteCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an empty zone",
		Long: `Delete the zone NAME with its keys, policies and mounts. The server refuses
while the zone holds secrets or tokens: delete them (kv metadata delete, token
revoke) inside the zone first.
` + exitCodesHelp,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := cf.connectAfter(e, checkZoneName(name))
			if err != nil {
				return err
			}
			if _, err := c.api.Logical().DeleteWithContext(cmd.Context(), "sys/zones/"+name); err != nil {
				out := c.zoneFail("delete zone "+name, err)
				var re *api.ResponseError
				if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest && strings.Contains(strings.Join(re.Errors, " "), "not empty") {
					return hintError{out, fmt.Sprintf("delete its secrets and revoke its tokens first, with EDGEVAULT_NAMESPACE=%s", name)}
				}
				return out
			}
			return c.success("Deleted zone: %s", name)
		},
	}
}

func newZoneRotateCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate NAME",
		Short: "Add a new data key version to a zone",
		Long: `Add a new data key version to the zone NAME: new writes use it at once, and
the zone's records are rewrapped with it in the background ("zone key-status
NAME" shows the progress).
` + exitCodesHelp,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := cf.connectAfter(e, checkZoneName(name))
			if err != nil {
				return err
			}
			s, err := c.api.Logical().WriteWithContext(cmd.Context(), "sys/zones/"+name+"/rotate", nil)
			if err != nil {
				return c.zoneFail("rotate zone "+name, err)
			}
			if c.json() {
				return printJSON(c.out, s)
			}
			if s == nil || s.Data == nil {
				return c.success("Rotated the data key of zone %s", name)
			}
			return c.success("Rotated the data key of zone %s: active version %s", name, formatValue(s.Data["active_version"]))
		},
	}
}

func newZoneKeyStatusCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "key-status NAME",
		Short: "Show a zone's key versions and rewrap progress",
		Long: `Show the data key versions of the zone NAME, the active one, and how many of
its records are still encrypted with an older version (remaining).
` + exitCodesHelp,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := cf.connectAfter(e, checkZoneName(name))
			if err != nil {
				return err
			}
			s, err := c.readRaw(cmd.Context(), "sys/zones/"+name+"/key-status", false)
			if err != nil {
				return c.zoneFail("key status of zone "+name, err)
			}
			if c.json() {
				return printJSON(c.out, s)
			}
			return printZoneKeyStatus(c.out, s.Data)
		},
	}
}

func newZoneRootTokenCmd(e *env, cf *clientFlags) *cobra.Command {
	var field string
	cmd := &cobra.Command{
		Use:   "root-token [-field=token] NAME",
		Short: "Create a root token that acts only inside a zone",
		Long: `Create a root token of the zone NAME: it can do anything inside that zone
(with EDGEVAULT_NAMESPACE=NAME) and nothing elsewhere. Use it to set up the
zone's policies and tokens, then revoke it.

-field=token prints only the new token, for scripts.
` + exitCodesHelp,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := cf.connectAfter(e, checkZoneName(name))
			if err != nil {
				return err
			}
			s, err := c.api.Logical().WriteWithContext(cmd.Context(), "sys/zones/"+name+"/root-token", nil)
			if err != nil {
				return c.zoneFail("create a root token of zone "+name, err)
			}
			if s == nil || s.Auth == nil {
				return fmt.Errorf("create a root token of zone %s: the server returned no token", name)
			}
			return c.printTokenSecret(s, field)
		},
	}
	cmd.Flags().StringVar(&field, "field", "", "print only this field (for example token or token_accessor)")
	return cmd
}

func newZoneMapCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "map [NAME|-]",
		Short: "Show what a stolen credential of each zone could reach",
		Long: `Show the blast radius of the zone NAME ("-" for the root zone), or of the
root zone and every zone: its mounts and how many secrets they hold, its
tokens, its policies and the paths they open widely, grants that cross zones,
and findings worth a look.

With -format=json, prints a JSON array with one object per zone.
` + exitCodesHelp,
		Args: argsBetween(0, 1, "[NAME|-]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if err := checkZoneName(args[0]); err != nil {
					return err
				}
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			names := args
			if len(names) == 0 {
				zones, err := c.listZones(ctx)
				if err != nil {
					return err
				}
				names = append([]string{rootZoneArg}, zones...)
			}
			maps := make([]map[string]any, 0, len(names))
			for _, name := range names {
				m, err := c.blastRadius(ctx, name)
				if err != nil {
					return err
				}
				maps = append(maps, m)
			}
			if c.json() {
				return printJSON(c.out, maps)
			}
			for i, m := range maps {
				if i > 0 {
					fmt.Fprintln(c.out)
				}
				if err := printZoneMap(c.out, m); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// blastRadius reads the blast radius of one zone ("-": the root zone). A
// 404 or 405 from a zone that exists means the server has no such endpoint.
func (c *conn) blastRadius(ctx context.Context, name string) (map[string]any, error) {
	display := name
	if name == rootZoneArg {
		display = "the root zone"
	}
	action := "map " + display
	s, err := c.readRaw(ctx, "sys/zones/"+name+"/blast-radius", false)
	if err == nil {
		if s.Data == nil {
			return nil, fmt.Errorf("%s: the server returned no data", action)
		}
		return s.Data, nil
	}
	var re *api.ResponseError
	if !errors.As(err, &re) || (re.StatusCode != http.StatusNotFound && re.StatusCode != http.StatusMethodNotAllowed) {
		return nil, c.zoneFail(action, err)
	}
	if re.StatusCode == http.StatusNotFound && name != rootZoneArg {
		// Either the zone or the endpoint is missing: ask about the zone.
		if _, zerr := c.readRaw(ctx, "sys/zones/"+name, false); zerr != nil {
			return nil, c.zoneFail(action, zerr)
		}
	}
	if c.api.Namespace() != "" && re.StatusCode == http.StatusNotFound {
		return nil, c.zoneFail(action, err)
	}
	return nil, hintError{
		fmt.Errorf("%s: the server at %s does not support zone maps (sys/zones/%s/blast-radius answered HTTP %d)", action, c.addr, name, re.StatusCode),
		"upgrade the server to a version with sys/zones/:name/blast-radius",
	}
}

// printZoneMap writes one zone's blast radius for people: the counts, then a
// section per list (mounts, policies, cross-zone grants, findings).
func printZoneMap(w io.Writer, m map[string]any) error {
	printHeader(w, "Zone: "+formatValue(m["zone"]), 6)
	sections := map[string]bool{"zone": true, "mounts": true, "policies": true, "cross_zone_grants": true, "findings": true}
	scalars := make(map[string]any, len(m))
	for k, v := range m {
		if !sections[k] {
			scalars[k] = v
		}
	}
	if err := printTable(w, mapRows(scalars)); err != nil {
		return err
	}
	if err := printObjects(w, "Mounts", m["mounts"], []string{"path", "type", "secrets"}); err != nil {
		return err
	}
	if err := printObjects(w, "Policies", m["policies"], []string{"name", "rules", "broad_paths"}); err != nil {
		return err
	}
	if err := printItems(w, "Cross-zone grants", m["cross_zone_grants"]); err != nil {
		return err
	}
	return printItems(w, "Findings", m["findings"])
}

// printObjects writes a list of JSON objects as a table with the given
// columns; a list value is shown comma separated, a missing one as "-".
func printObjects(w io.Writer, title string, v any, columns []string) error {
	fmt.Fprintf(w, "\n%s\n", title)
	list, _ := v.([]any)
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "  none")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 4, ' ', 0)
	header := make([]string, len(columns))
	for i, col := range columns {
		header[i] = strings.ReplaceAll(col, "_", " ")
	}
	fmt.Fprintf(tw, "  %s\n", strings.Join(header, "\t"))
	for _, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			fmt.Fprintf(tw, "  %s\n", formatValue(item))
			continue
		}
		cells := make([]string, len(columns))
		for i, col := range columns {
			cells[i] = cellValue(obj[col])
		}
		fmt.Fprintf(tw, "  %s\n", strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// cellValue renders one table cell: lists comma separated, nothing as "-".
func cellValue(v any) string {
	switch t := v.(type) {
	case nil:
		return "-"
	case []any:
		if len(t) == 0 {
			return "-"
		}
		parts := make([]string, len(t))
		for i, x := range t {
			parts[i] = formatValue(x)
		}
		return strings.Join(parts, ",")
	}
	return formatValue(v)
}

// printItems writes a list as bullet points, or "none".
func printItems(w io.Writer, title string, v any) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n", title)
	list, _ := v.([]any)
	if len(list) == 0 {
		b.WriteString("  none\n")
	}
	for _, item := range list {
		fmt.Fprintf(&b, "  * %s\n", formatValue(item))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printZoneKeyStatus writes a zone's key status for people: the counts, the
// rewrap progress as rewrap_* rows, then one line per key version.
func printZoneKeyStatus(w io.Writer, m map[string]any) error {
	scalars := make(map[string]any, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case map[string]any:
			for sk, sv := range t {
				scalars[k+"_"+sk] = sv
			}
		case []any:
		default:
			scalars[k] = t
		}
	}
	if err := printTable(w, mapRows(scalars)); err != nil {
		return err
	}
	return printObjects(w, "Versions", m["versions"], []string{"version", "records", "created"})
}
