package httpapi

import (
	"encoding/json"
	"strconv"

	"github.com/edgevault/edgevault/internal/jsonenc"
	"github.com/edgevault/edgevault/internal/logical"
)

// appendEnvelope writes Vault's response envelope. It is the hot path of
// every read, so the common value types are written directly instead of
// through reflection; anything else falls back to encoding/json. Object keys
// are sorted, as encoding/json sorts them.
func appendEnvelope(b []byte, requestID string, resp *logical.Response, mountType string) ([]byte, error) {
	b = append(b, `{"request_id":`...)
	b = jsonenc.AppendString(b, requestID)
	b = append(b, `,"lease_id":`...)
	b = jsonenc.AppendString(b, resp.LeaseID)
	b = append(b, `,"renewable":`...)
	b = strconv.AppendBool(b, resp.Renewable)
	b = append(b, `,"lease_duration":`...)
	b = strconv.AppendInt(b, int64(resp.LeaseDuration), 10)
	b = append(b, `,"data":`...)
	var err error
	if resp.Data == nil {
		b = append(b, "null"...)
	} else if b, err = jsonenc.AppendValue(b, resp.Data); err != nil {
		return nil, err
	}
	b = append(b, `,"wrap_info":null,"warnings":`...)
	if resp.Warnings == nil {
		b = append(b, "null"...)
	} else {
		b = jsonenc.AppendStrings(b, resp.Warnings)
	}
	b = append(b, `,"auth":`...)
	if resp.Auth == nil {
		b = append(b, "null"...)
	} else {
		auth, err := json.Marshal(resp.Auth)
		if err != nil {
			return nil, err
		}
		b = append(b, auth...)
	}
	b = append(b, `,"mount_type":`...)
	b = jsonenc.AppendString(b, mountType)
	return append(b, "}\n"...), nil
}
