package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// Revoke revokes token id and its whole subtree. Revoking an unknown token is
// not an error, as in Vault.
func (s *Store) Revoke(ctx context.Context, id string) error {
	if id == "" || len(id) > maxIDLen {
		return nil
	}
	k, err := s.hashKeys(ctx, false)
	if errors.Is(err, errNoSalt) {
		return nil
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.revokeTreeLocked(ctx, k.tokenHash(id))
	return err
}

// RevokeAccessor revokes the token whose accessor is acc, with its subtree.
// It returns ErrNotFound for an unknown accessor.
func (s *Store) RevokeAccessor(ctx context.Context, acc string) error {
	e, err := s.byAccessor(ctx, acc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.revokeTreeLocked(ctx, e.hash)
	return err
}

// notifyRevoke calls the BeforeRevoke hook for tokens about to be deleted.
func (s *Store) notifyRevoke(ctx context.Context, accessors []string) error {
	if s.beforeRevoke == nil || len(accessors) == 0 {
		return nil
	}
	if err := s.beforeRevoke(ctx, accessors); err != nil {
		return fmt.Errorf("token store: revoke: what the tokens own could not be revoked, so they are kept: %w", err)
	}
	return nil
}

// node is one token of a subtree being revoked.
type node struct {
	hash   string
	parent string // "" when unknown or orphan
}

// revokeTreeLocked deletes the token at hash and every descendant, deepest
// level first, in transactions of at most revokeBatch tokens; the token at
// hash goes last. It returns the number of token entries deleted. Callers
// hold s.mu.
//
// Crash safety: each transaction removes whole tokens (entry, accessor index,
// parent index) and only tokens all of whose descendants are already gone,
// so what survives a crash is still a tree under hash, and calling again
// finishes the job.
func (s *Store) revokeTreeLocked(ctx context.Context, hash string) (int, error) {
	top, err := s.read(ctx, hash)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	first := node{hash: hash}
	if top != nil {
		first.parent = top.rec.Parent
	}
	kids, err := s.b.List(ctx, keyParent+hash+"/")
	if err != nil {
		return 0, fmt.Errorf("token store: list children: %w", err)
	}
	if top == nil && len(kids) == 0 {
		return 0, nil // unknown token: nothing to write
	}
	// Breadth-first, iteratively: deep trees cannot overflow the stack.
	order := []node{first}
	seen := map[string]bool{hash: true}
	for i := 0; i < len(order); i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		kids, err := s.b.List(ctx, keyParent+order[i].hash+"/")
		if err != nil {
			return 0, fmt.Errorf("token store: list children: %w", err)
		}
		for _, c := range kids {
			if strings.HasSuffix(c, "/") || seen[c] {
				continue
			}
			seen[c] = true
			order = append(order, node{hash: c, parent: order[i].hash})
		}
	}

	k, err := s.hashKeys(ctx, false)
	if err != nil {
		return 0, err
	}
	removed := 0
	for end := len(order); end > 0; end -= revokeBatch {
		start := max(end-revokeBatch, 0)
		var ops []storage.Op
		var hashes, accessors []string
		batchRemoved := 0
		// Reverse breadth-first order: children before their parents.
		for i := end - 1; i >= start; i-- {
			n := order[i]
			e := top
			if i != 0 {
				e, err = s.read(ctx, n.hash)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return removed, err
				}
			}
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: keyID + n.hash})
			if e != nil {
				batchRemoved++
				accessors = append(accessors, e.rec.Accessor)
				ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: keyAccessor + k.accessorHash(e.rec.Accessor)})
			}
			if n.parent != "" {
				ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: childKey(n.parent, n.hash)})
			}
			hashes = append(hashes, n.hash)
		}
		if err := s.notifyRevoke(ctx, accessors); err != nil {
			return removed, err
		}
		if err := s.b.Txn(ctx, ops); err != nil {
			return removed, fmt.Errorf("token store: revoke: %w", err)
		}
		s.cache.invalidate(hashes...)
		removed += batchRemoved
	}
	return removed, nil
}

// RevokeOrphan revokes token id alone: its children become orphans. Unknown
// tokens are ignored.
func (s *Store) RevokeOrphan(ctx context.Context, id string) error {
	if id == "" || len(id) > maxIDLen {
		return nil
	}
	k, err := s.hashKeys(ctx, false)
	if errors.Is(err, errNoSalt) {
		return nil
	}
	if err != nil {
		return err
	}
	hash := k.tokenHash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.read(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	kids, err := s.b.List(ctx, keyParent+hash+"/")
	if err != nil {
		return fmt.Errorf("token store: list children: %w", err)
	}
	// Orphan the children in batches first: a crash part-way leaves the
	// token valid with fewer children, and a retry finishes.
	for start := 0; start < len(kids); start += revokeBatch {
		var ops []storage.Op
		var hashes []string
		for _, c := range kids[start:min(start+revokeBatch, len(kids))] {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: childKey(hash, c)})
			ce, err := s.read(ctx, c)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			ce = ce.clone()
			ce.rec.Parent = ""
			val, err := ce.encode()
			if err != nil {
				return err
			}
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: keyID + c, Value: val})
			hashes = append(hashes, c)
		}
		if err := s.b.Txn(ctx, ops); err != nil {
			return fmt.Errorf("token store: orphan children: %w", err)
		}
		s.cache.invalidate(hashes...)
	}
	if err := s.notifyRevoke(ctx, []string{e.rec.Accessor}); err != nil {
		return err
	}
	ops := []storage.Op{
		{Kind: storage.OpDelete, Key: keyID + hash},
		{Kind: storage.OpDelete, Key: keyAccessor + k.accessorHash(e.rec.Accessor)},
	}
	if e.rec.Parent != "" {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: childKey(e.rec.Parent, hash)})
	}
	if err := s.b.Txn(ctx, ops); err != nil {
		return fmt.Errorf("token store: revoke orphan: %w", err)
	}
	s.cache.invalidate(hash)
	return nil
}

// Tidy deletes expired tokens with their subtrees, tokens whose parent no
// longer exists (left by a crash or by a creation racing its parent's
// revocation), and index entries pointing at deleted tokens. It returns the
// number of token entries deleted. It scans without holding the store's
// mutex and takes it only to revoke, so requests keep flowing.
func (s *Store) Tidy(ctx context.Context) (int, error) {
	if _, err := s.hashKeys(ctx, false); errors.Is(err, errNoSalt) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	hashes, err := s.b.List(ctx, keyID)
	if err != nil {
		return 0, fmt.Errorf("token store: tidy: list tokens: %w", err)
	}
	removed := 0
	for _, h := range hashes {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		dead, err := s.dead(ctx, h, s.now())
		if err != nil {
			return removed, fmt.Errorf("token store: tidy: %w", err)
		}
		if !dead {
			continue
		}
		n, err := s.revokeIfDead(ctx, h)
		removed += n
		if err != nil {
			return removed, fmt.Errorf("token store: tidy: %w", err)
		}
	}
	if err := s.tidyIndexes(ctx); err != nil {
		return removed, fmt.Errorf("token store: tidy: %w", err)
	}
	return removed, nil
}

// Summary counts the store's live tokens, and those carrying the root
// policy, for reports such as a zone's blast-radius map. It reads every
// token.
func (s *Store) Summary(ctx context.Context) (total, root int, err error) {
	hashes, err := s.b.List(ctx, keyID)
	if err != nil {
		return 0, 0, fmt.Errorf("token store: summary: %w", err)
	}
	now := s.now()
	for _, h := range hashes {
		if dead, err := s.dead(ctx, h, now); err != nil || dead {
			if err != nil {
				return 0, 0, fmt.Errorf("token store: summary: %w", err)
			}
			continue
		}
		e, err := s.read(ctx, h)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("token store: summary: %w", err)
		}
		total++
		if e.IsRoot() {
			root++
		}
	}
	return total, root, nil
}

// dead reports whether the token at hash is expired or its parent is gone.
// A token already deleted is not dead (there is nothing to do).
func (s *Store) dead(ctx context.Context, hash string, now time.Time) (bool, error) {
	e, err := s.read(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if e.expiredAt(now) {
		return true, nil
	}
	if e.rec.Parent == "" {
		return false, nil
	}
	_, err = s.b.Get(ctx, keyID+e.rec.Parent)
	if errors.Is(err, storage.ErrNotFound) {
		return true, nil
	}
	return false, err
}

func (s *Store) revokeIfDead(ctx context.Context, hash string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dead, err := s.dead(ctx, hash, s.now())
	if err != nil || !dead {
		return 0, err
	}
	return s.revokeTreeLocked(ctx, hash)
}

// tidyIndexes removes accessor and children index entries whose token is gone.
func (s *Store) tidyIndexes(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	accs, err := s.b.List(ctx, keyAccessor)
	if err != nil {
		return fmt.Errorf("list accessors: %w", err)
	}
	var ops []storage.Op
	for _, a := range accs {
		h, err := s.b.Get(ctx, keyAccessor+a)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if gone, err := s.gone(ctx, string(h)); err != nil {
			return err
		} else if gone {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: keyAccessor + a})
		}
	}
	parents, err := s.b.List(ctx, keyParent)
	if err != nil {
		return fmt.Errorf("list parents: %w", err)
	}
	for _, p := range parents {
		p = strings.TrimSuffix(p, "/")
		kids, err := s.b.List(ctx, keyParent+p+"/")
		if err != nil {
			return err
		}
		for _, c := range kids {
			cgone, err := s.gone(ctx, c)
			if err != nil {
				return err
			}
			// A live child of a gone parent was revoked above unless it was
			// created since; it is left for the next Tidy.
			if cgone {
				ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: childKey(p, c)})
			}
		}
	}
	for start := 0; start < len(ops); start += 3 * revokeBatch {
		if err := s.b.Txn(ctx, ops[start:min(start+3*revokeBatch, len(ops))]); err != nil {
			return fmt.Errorf("delete stale index entries: %w", err)
		}
	}
	return nil
}

func (s *Store) gone(ctx context.Context, hash string) (bool, error) {
	_, err := s.b.Get(ctx, keyID+hash)
	if errors.Is(err, storage.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// Run calls Tidy every TidyInterval until ctx is done, logging what it
// removed and any error. It returns ctx's error.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.tidyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			n, err := s.Tidy(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("token tidy failed", "removed", n, "err", err)
			} else if n > 0 {
				s.log.Info("token tidy", "removed", n)
			}
		}
	}
}
