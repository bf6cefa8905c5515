package inmem_test

import (
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
	"github.com/edgevault/edgevault/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b := inmem.New()
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}
