// Command summary turns the JUnit reports of a conformance run into one
// page: how many conformance specs passed, failed and were skipped, and
// each failure's spec with the first line of its error.
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type testCase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

type report struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

// outcome of one conformance spec across the reports.
type outcome struct {
	passed, failed, skipped bool
	message                 string
	seconds                 float64
}

func main() {
	out := flag.String("o", "", "the summary file to write (default: standard output)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: summary [-o FILE] JUNIT.xml...")
		os.Exit(2)
	}
	specs := map[string]*outcome{}
	missing := false
	for _, path := range flag.Args() {
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			fmt.Fprintf(os.Stderr, "summary: %s is missing: that pass of the suite did not finish\n", path)
			missing = true
			continue
		}
		if err != nil {
			fatal(err)
		}
		var r report
		if err := xml.Unmarshal(b, &r); err != nil {
			fatal(fmt.Errorf("%s: %w", path, err))
		}
		for _, s := range r.Suites {
			for _, c := range s.Cases {
				record(specs, c)
			}
		}
	}
	page, complete := render(specs)
	if *out == "" {
		fmt.Print(page)
	} else if err := os.WriteFile(*out, []byte(page), 0o644); err != nil {
		fatal(err)
	}
	if !complete || missing {
		os.Exit(1)
	}
}

// record notes one report's result for a conformance spec. A spec left
// out by the run's filters appears in every report as skipped with no
// reason; it is not part of the run.
func record(specs map[string]*outcome, c testCase) {
	if !strings.Contains(c.Name, "[Conformance]") {
		return
	}
	o := specs[c.Name]
	if o == nil {
		o = &outcome{}
	}
	switch {
	case c.Failure != nil:
		o.failed, o.message = true, firstLine(c.Failure.Message)
	case c.Error != nil:
		o.failed, o.message = true, firstLine(c.Error.Message)
	case c.Skipped != nil:
		msg := strings.TrimSpace(strings.TrimPrefix(c.Skipped.Message, "skipped"))
		msg = strings.TrimSpace(strings.TrimPrefix(msg, "-"))
		if msg == "" {
			if specs[c.Name] == nil {
				return
			}
			break
		}
		o.skipped, o.message = true, firstLine(msg)
	case c.Status == "passed":
		o.passed = true
	default:
		return
	}
	o.seconds += c.Time
	specs[c.Name] = o
}

// render returns the page, and whether the run is complete: some spec ran,
// and every one passed.
func render(specs map[string]*outcome) (string, bool) {
	var passed, failed, skipped int
	var failures, skips []string
	for name, o := range specs {
		switch {
		case o.failed:
			failed++
			failures = append(failures, fmt.Sprintf("- %s\n  %s", name, o.message))
		case o.skipped:
			skipped++
			skips = append(skips, fmt.Sprintf("- %s\n  %s", name, o.message))
		case o.passed:
			passed++
		}
	}
	sort.Strings(failures)
	sort.Strings(skips)
	var b strings.Builder
	fmt.Fprintf(&b, "# Conformance run\n\n| passed | failed | skipped | total |\n|---|---|---|---|\n| %d | %d | %d | %d |\n", passed, failed, skipped, passed+failed+skipped)
	if len(failures) > 0 {
		fmt.Fprintf(&b, "\n## Failed\n\n%s\n", strings.Join(failures, "\n"))
	}
	if len(skips) > 0 {
		fmt.Fprintf(&b, "\n## Skipped\n\n%s\n", strings.Join(skips, "\n"))
	}
	return b.String(), passed > 0 && failed == 0 && skipped == 0
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "summary: %v\n", err)
	os.Exit(1)
}
