// Command square is a Trellis function: given a decimal integer x as its
// first argument, it returns x*x in decimal.
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o square.wasm .
package main

import (
	"errors"
	"strconv"

	"github.com/trellisdb/trellis/fn"
)

func init() { fn.Handle(square) }

func square(_ *fn.Ctx, args [][]byte) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("square: want one argument, a decimal integer")
	}
	x, err := strconv.ParseInt(string(args[0]), 10, 64)
	if err != nil {
		return nil, err
	}
	return strconv.AppendInt(nil, x*x, 10), nil
}

func main() {}
