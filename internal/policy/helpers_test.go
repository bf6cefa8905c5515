package policy

import (
	"encoding/json"
	"errors"
)

func jsonNumber(s string) json.Number { return json.Number(s) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }
