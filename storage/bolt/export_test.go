package bolt

// Commits returns how many transactions the group commit of s has
// committed, for tests and benchmarks.
func Commits(s *Store) int64 { return s.gc.commits.Load() }
