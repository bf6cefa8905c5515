package cli

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/barrier"
	"github.com/edgevault/edgevault/internal/barrier/pkcs11"
	"github.com/edgevault/edgevault/internal/config"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

func newOperatorHSMKeygenCmd(e *env) *cobra.Command {
	var lib, tokenLabel, keyLabel, pinFile string
	var slot int
	cmd := &cobra.Command{
		Use:   "hsm-keygen -lib PATH (-token-label LABEL | -slot N) -key-label LABEL",
		Short: "Create the AES-256 key of the pkcs11 seal in an HSM",
		Long: `Create the AES-256 key that the pkcs11 seal wraps the root key with, inside the
HSM token, as a sensitive, non-extractable key labelled -key-label. It refuses when
a key with that label already exists.

The user PIN is read from the EDGEVAULT_HSM_PIN environment variable or, when it is
unset, from the first line of -pin-file. It is never taken as a flag value.
` + exitCodesHelp,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			pin, err := pkcs11.ResolvePIN(e.getenv(pkcs11.PINEnv), pinFile)
			if err != nil {
				return hintError{err, "export " + pkcs11.PINEnv + "=... or pass -pin-file FILE"}
			}
			cfg := pkcs11.Config{Lib: lib, TokenLabel: tokenLabel, KeyLabel: keyLabel, PIN: pin}
			if cmd.Flags().Changed("slot") {
				cfg.Slot = &slot
			}
			if err := cfg.Validate(); err != nil {
				return usagef("%s", flagWords(err.Error()))
			}
			if err := pkcs11.GenerateKey(cfg); err != nil {
				if errors.Is(err, pkcs11.ErrKeyExists) {
					return hintError{err, "choose another -key-label; the existing key may protect a server's root key"}
				}
				return err
			}
			fmt.Fprintf(e.stdout, "Created AES-256 key %q (non-extractable) in the HSM token.\n", keyLabel)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&lib, "lib", "", "absolute path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so")
	fl.StringVar(&tokenLabel, "token-label", "", "label of the token to create the key in")
	fl.IntVar(&slot, "slot", 0, "slot number of the token (instead of -token-label)")
	fl.StringVar(&keyLabel, "key-label", "", "label of the key to create")
	fl.StringVar(&pinFile, "pin-file", "", "file holding the user PIN (when "+pkcs11.PINEnv+" is unset)")
	return cmd
}

// flagWords turns the config field names in a pkcs11 validation error into
// this command's flag names.
func flagWords(msg string) string {
	r := []struct{ from, to string }{
		{"token_label", "-token-label"}, {"key_label", "-key-label"}, {"pin_file", "-pin-file"},
		{"pkcs11: lib", "pkcs11: -lib"}, {"or slot", "or -slot"}, {"pkcs11: slot", "pkcs11: -slot"},
	}
	for _, x := range r {
		msg = strings.ReplaceAll(msg, x.from, x.to)
	}
	return msg
}

func newOperatorSealMigrateCmd(e *env) *cobra.Command {
	var configPath, to string
	var shares, threshold int
	cmd := &cobra.Command{
		Use:   "seal-migrate -config FILE -to pkcs11|shamir [-shares N -threshold T]",
		Short: "Move a stopped server's storage between the shamir and pkcs11 seals",
		Long: `Change the seal protecting the root key, offline: stop the server first (the
storage file is opened directly). The root key, the keyring and every record stay
as they are; only the seal's records change, in one transaction.

-config is the server configuration: its storage is migrated, and its
seal "pkcs11" block names the HSM key, whichever the direction.

  -to pkcs11  reads threshold unseal keys from standard input (one per line, hex
              or base64) and prints -shares recovery keys (-threshold to rebuild).
              Start the server with the same configuration: it unseals itself.
  -to shamir  reads threshold recovery keys from standard input and prints -shares
              new unseal keys. Remove the seal block, start, and unseal.

The HSM PIN comes from EDGEVAULT_HSM_PIN or the block's pin_file.
` + exitCodesHelp,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usagef("-config is required")
			}
			if to != "pkcs11" && to != "shamir" {
				return usagef("-to %q: expected pkcs11 or shamir", to)
			}
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			if cfg.Seal != "pkcs11" {
				return hintError{usagef("config %s: a seal \"pkcs11\" block is required to reach the HSM", configPath), "add the seal \"pkcs11\" block while migrating, in either direction"}
			}
			if cfg.Storage.Type != "bolt" {
				return usagef("storage %q: only bolt storage survives to be migrated", cfg.Storage.Type)
			}
			hsm, err := newHSMProtector(e, cfg.PKCS11)
			if err != nil {
				return err
			}
			defer hsm.Close()
			keys, err := readKeyLines(e)
			if err != nil {
				return err
			}
			phys, err := bolt.Open(cfg.Storage.Path, bolt.Options{})
			if err != nil {
				return hintError{err, "stop the server before migrating its seal"}
			}
			defer phys.Close()
			ctx := cmd.Context()
			var out [][]byte
			kind := "Recovery"
			if to == "pkcs11" {
				out, err = barrier.MigrateToAuto(ctx, phys, keys, "pkcs11", hsm, shares, threshold)
			} else {
				kind = "Unseal"
				out, err = barrier.MigrateToShamir(ctx, phys, keys, hsm, shares, threshold)
			}
			for _, k := range keys {
				clear(k)
			}
			if err != nil {
				return err
			}
			for i, k := range out {
				fmt.Fprintf(e.stdout, "%s Key %d: %s\n", kind, i+1, base64.StdEncoding.EncodeToString(k))
				clear(k)
			}
			fmt.Fprintf(e.stdout, "\nThe storage now uses the %s seal. %d of these keys are needed; they are shown only now.\n", to, threshold)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configPath, "config", "", "server configuration file (storage and seal \"pkcs11\" block)")
	fl.StringVar(&to, "to", "", "the seal to migrate to: pkcs11 or shamir")
	fl.IntVar(&shares, "shares", 5, "number of new keys (recovery keys for pkcs11, unseal keys for shamir)")
	fl.IntVar(&threshold, "threshold", 3, "number of the new keys needed")
	return cmd
}

// readKeyLines reads hex or base64 keys from standard input, one per line,
// until EOF.
func readKeyLines(e *env) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(e.stdin)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, err := hex.DecodeString(line)
		if err != nil {
			if k, err = base64.StdEncoding.DecodeString(line); err != nil {
				return nil, usagef("standard input line %d: not a key in hex or base64", n)
			}
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read keys from standard input: %w", err)
	}
	if len(keys) == 0 {
		return nil, usagef("no keys on standard input: give the threshold of current keys, one per line")
	}
	return keys, nil
}
