package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/lionactor/lionactor/internal/batch"
)

// reportFile is the HTML report of a run. It is created before the run, so
// that a path that cannot be written stops the command before anything is
// sent; the run writes it when it ends.
type reportFile struct {
	path string
	file *os.File
}

// openReport creates the report at path and has cfg's run write it there;
// an empty path means no report.
func openReport(flag, path string, cfg *batch.Config) (*reportFile, error) {
	if path == "" {
		return &reportFile{}, nil
	}
	file, err := os.Create(path)
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	cfg.Report = file
	return &reportFile{path: path, file: file}, nil
}

// finish closes the report. A run that ended before it started calling
// wrote nothing: its empty file is removed.
func (r *reportFile) finish() error {
	if r.file == nil {
		return nil
	}
	st, statErr := r.file.Stat()
	if err := r.file.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if statErr == nil && st.Size() == 0 {
		r.path = ""
		return errors.Join(os.Remove(r.file.Name()))
	}
	return nil
}

// announce tells w where the finished report is, if one was written.
func (r *reportFile) announce(w io.Writer) {
	if r.path != "" {
		fmt.Fprintf(w, "report: %s\n", r.path)
	}
}
