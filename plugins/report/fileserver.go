package report

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
)

// servedName is what FileServer serves: a report name, no directories, no
// hidden or temporary files.
var servedName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}\.csv$`)

// FileServer returns a read-only handler serving the report files of dir.
// The request path must be "/<name>.csv" (mount it with [http.StripPrefix],
// as in the example); directories are never listed, and anything that is not
// a .csv file directly in dir (other names, subdirectories, "..", symbolic
// links leading out of dir) is answered 404. Only GET and HEAD are allowed.
// Files are served as text/csv, with range and conditional requests.
func FileServer(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, "/")
		if !ok || !servedName.MatchString(name) {
			http.NotFound(w, r)
			return
		}
		if err := serveFile(w, r, dir, name); err != nil {
			if errors.Is(err, errNotFound) {
				http.NotFound(w, r)
				return
			}
			http.Error(w, "cannot read report", http.StatusInternalServerError)
		}
	})
}

// errNotFound is wrapped by serveFile's errors that mean 404: a name that
// does not exist, escapes dir or is not a regular file.
var errNotFound = errors.New("report: no such report")

// serveFile serves dir/name, never following a path out of dir.
func serveFile(w http.ResponseWriter, r *http.Request, dir, name string) error {
	f, err := os.OpenInRoot(dir, name)
	if err != nil {
		return fmt.Errorf("%w: opening %s: %w", errNotFound, name, err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("report: stat %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", errNotFound, name)
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	http.ServeContent(w, r, name, st.ModTime(), f)
	return nil
}
