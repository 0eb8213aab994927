// Command guest is a test function for package wasm. Its first argument
// names what it should do; see the cases below.
package main

import (
	"errors"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/trellisdb/trellis/fn"
)

func init() { fn.Handle(handle) }

var calls int // survives from call to call on one instance

var keep [][]byte

func handle(c *fn.Ctx, args [][]byte) ([]byte, error) {
	calls++
	if len(args) == 0 {
		return nil, errors.New("no command")
	}
	rest := args[1:]
	switch cmd := string(args[0]); cmd {
	case "echo":
		var b []byte
		for i, a := range rest {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, a...)
		}
		return b, nil
	case "calls":
		return []byte(strconv.Itoa(calls)), nil
	case "fail":
		return nil, errors.New(string(rest[0]))
	case "loop":
		for {
		}
	case "sleep":
		time.Sleep(time.Hour)
		return []byte("woke"), nil
	case "oom":
		for {
			keep = append(keep, make([]byte, 4<<20))
		}
	case "panic":
		panic("boom")
	case "exit":
		os.Exit(3)
	case "big":
		n, err := strconv.Atoi(string(rest[0]))
		if err != nil {
			return nil, err
		}
		return make([]byte, n), nil
	case "readfile":
		b, err := os.ReadFile(string(rest[0]))
		if err != nil {
			return nil, err
		}
		return b, nil
	case "dial":
		conn, err := net.Dial("tcp", string(rest[0]))
		if err != nil {
			return nil, err
		}
		conn.Close()
		return []byte("connected"), nil
	case "env":
		return []byte("env=" + strconv.Itoa(len(os.Environ())) + " args=" + strconv.Itoa(len(os.Args))), nil
	case "host":
		// get KEY; put KEY+"!" = value; send "peer"; recv; log.
		key := string(rest[0])
		v, ok, err := c.Get(key)
		if err != nil {
			return nil, errors.New("get: " + err.Error())
		}
		if !ok {
			v = []byte("<none>")
		}
		if err := c.Put(key+"!", v); err != nil {
			return nil, errors.New("put: " + err.Error())
		}
		if err := c.Send("peer", append([]byte("hello "), v...)); err != nil {
			return nil, errors.New("send: " + err.Error())
		}
		m, err := c.Recv()
		if err != nil {
			return nil, errors.New("recv: " + err.Error())
		}
		c.Log("got " + strconv.Itoa(len(m)) + " bytes")
		return []byte(strconv.Itoa(len(v)) + ":" + digest(v) + "|" + strconv.Itoa(len(m)) + ":" + digest(m)), nil
	case "recv":
		m, err := c.Recv()
		if err != nil {
			return nil, errors.New("recv: " + err.Error())
		}
		return m, nil
	case "put":
		// put KEY SIZE: write a value of SIZE bytes.
		n, _ := strconv.Atoi(string(rest[1]))
		if err := c.Put(string(rest[0]), make([]byte, n)); err != nil {
			return nil, err
		}
		return []byte("ok"), nil
	}
	return nil, errors.New("unknown command " + strconv.Quote(string(args[0])))
}

// digest abbreviates long values: the first and last 8 bytes.
func digest(b []byte) string {
	if len(b) <= 16 {
		return string(b)
	}
	return string(b[:8]) + "..." + string(b[len(b)-8:])
}

func main() {}
