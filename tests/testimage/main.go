// Command testimage is the entrypoint of the image the end-to-end tests run
// in pods (tests/e2e packs it into OCI tarballs as skiff.test/web:<tag>; it
// lives at /web in the image). The image holds nothing else, so this one
// static program is also the in-pod client and the misbehaving workload:
//
//	web [serve]             HTTP server on :8080 (PORT overrides); every request
//	                        is answered with "hostname=<hostname> path=<path>\n"
//	                        and logged as one line on stdout; /healthz says ok
//	web echo ARGS...        print ARGS separated by spaces, exit 0
//	web sleep SECONDS       sleep (SECONDS may be "infinity"), exit 0
//	web alloc [MiB]         allocate and touch memory, 10 MiB at a time, until
//	                        killed (or until MiB are held, then keep holding)
//	web get URL...          GET each URL (5s timeout, WEB_TIMEOUT overrides),
//	                        print the bodies; exit 1 on any failure
//	web resolve NAME...     print the addresses of each NAME; exit 1 on failure
//	web write FILE TEXT     write TEXT to FILE (synced), then sleep until killed
//	web cat FILE            print FILE's content; exit 1 if it cannot be read
//	web burn SECONDS        keep one CPU busy for SECONDS, then idle until killed
//	web cp SRC DST          copy the file SRC to DST (same mode) in one rename
//
// SIGTERM ends every mode at once with status 0 so pods stop without waiting
// for their grace period.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	// As PID 1 of a container a signal without a handler is ignored, so
	// handle SIGTERM and SIGINT explicitly.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		fmt.Printf("received %s, exiting\n", s)
		os.Exit(0)
	}()

	args := os.Args[1:]
	mode := "serve"
	if len(args) > 0 {
		mode, args = args[0], args[1:]
	}
	var err error
	switch mode {
	case "serve":
		err = serve()
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "sleep":
		err = sleep(args)
	case "alloc":
		err = alloc(args)
	case "get":
		err = get(args)
	case "resolve":
		err = resolve(args)
	case "write":
		err = write(args)
	case "cat":
		err = cat(args)
	case "burn":
		err = burn(args)
	case "cp":
		err = copyFile(args)
	default:
		err = fmt.Errorf("unknown mode %q (want serve, echo, sleep, alloc, get, resolve, write, cat, burn or cp)", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "web:", err)
		os.Exit(1)
	}
}

func serve() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	version := os.Getenv("WEB_VERSION")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// One line per request on stdout, for `kubectl logs`.
		fmt.Printf("%s request %s %s from %s\n", time.Now().UTC().Format(time.RFC3339), r.Method, r.URL.Path, r.RemoteAddr)
		if version != "" {
			w.Header().Set("X-Web-Version", version)
		}
		fmt.Fprintf(w, "hostname=%s path=%s\n", host, r.URL.Path)
	})
	srv := &http.Server{
		Addr:              ":" + port,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Printf("serving on :%s as %s (version %q)\n", port, host, version)
	return srv.ListenAndServe()
}

func sleep(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: sleep SECONDS|infinity")
	}
	if args[0] == "infinity" || args[0] == "inf" {
		select {}
	}
	n, err := strconv.ParseFloat(args[0], 64)
	if err != nil || n < 0 {
		return fmt.Errorf("sleep: %q is not a number of seconds", args[0])
	}
	time.Sleep(time.Duration(n * float64(time.Second)))
	return nil
}

// alloc grows the heap in 10 MiB steps and writes to every page so the
// memory is really charged to the container's cgroup; the chunks stay
// referenced so the garbage collector cannot give them back.
func alloc(args []string) error {
	limit := 0
	if len(args) > 0 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return fmt.Errorf("alloc: %q is not a number of MiB", args[0])
		}
		limit = n
	}
	const step = 10
	var held [][]byte
	total := 0
	for limit == 0 || total < limit {
		chunk := make([]byte, step<<20)
		for i := 0; i < len(chunk); i += 4096 {
			chunk[i] = byte(i/4096) | 1
		}
		held = append(held, chunk)
		total += step
		fmt.Printf("allocated %d MiB\n", total)
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("holding %d MiB in %d chunks\n", total, len(held))
	for {
		// Keep touching the memory so it is never reclaimable.
		for _, c := range held {
			for i := 0; i < len(c); i += 4096 {
				c[i]++
			}
		}
		time.Sleep(time.Second)
	}
}

func get(urls []string) error {
	if len(urls) == 0 {
		return fmt.Errorf("usage: get URL...")
	}
	timeout := 5 * time.Second
	if v := os.Getenv("WEB_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("WEB_TIMEOUT: %v", err)
		}
		timeout = d
	}
	client := &http.Client{
		Timeout: timeout,
		// A new connection per request so each one is load-balanced anew.
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	for _, u := range urls {
		resp, err := client.Get(u)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("GET %s: reading body: %v", u, err)
		}
		os.Stdout.Write(body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
	}
	return nil
}

func resolve(names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("usage: resolve NAME...")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range names {
		addrs, err := net.DefaultResolver.LookupHost(ctx, n)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s\n", n, strings.Join(addrs, " "))
	}
	return nil
}

// write leaves a file on a volume and stays up, as a workload does, so a
// test can tell a pod that wrote its data from one that failed to.
func write(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: write FILE TEXT")
	}
	f, err := os.Create(args[0])
	if err != nil {
		return err
	}
	if _, err := f.WriteString(args[1]); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("wrote %d bytes to %s\n", len(args[1]), args[0])
	select {}
}

func cat(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: cat FILE")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// burn is a CPU load that ends by itself, so an autoscaler can be seen
// scaling up under it and back down after it.
func burn(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: burn SECONDS")
	}
	n, err := strconv.ParseFloat(args[0], 64)
	if err != nil || n < 0 {
		return fmt.Errorf("burn: %q is not a number of seconds", args[0])
	}
	fmt.Printf("burning one CPU for %gs\n", n)
	until := time.Now().Add(time.Duration(n * float64(time.Second)))
	x := uint64(1)
	for time.Now().Before(until) {
		for i := 0; i < 1_000_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	fmt.Printf("done burning (%d), idle\n", x%10)
	select {}
}

// copyFile installs a file the way CNI installers do: whoever watches DST's
// folder sees either no file or the whole of it.
func copyFile(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: cp SRC DST")
	}
	src, dst := args[0], args[1]
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".partial"
	if err := os.WriteFile(tmp, data, info.Mode().Perm()); err != nil {
		return err
	}
	if err := os.Chmod(tmp, info.Mode().Perm()); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	fmt.Printf("installed %s\n", dst)
	return nil
}
