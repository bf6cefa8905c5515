package httpapi

import "time"

// ExpireRevocations runs the revocation tracker's timeout check as if the
// clock read now, for the external tests (the real check runs every minute
// against a 10-minute timeout).
func (s *Server) ExpireRevocations(now time.Time) {
	if u := s.state.Load(); u != nil && u.events != nil {
		u.events.track.expire(now, revocationTimeout)
	}
}
