package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/batch"
)

// costFlags are the batch command's settings of what a run costs: the
// price table, the spend cap, the cache, and the dry run.
type costFlags struct {
	prices      string
	maxCost     float64
	cacheDir    string
	cacheAll    bool
	dryRun      bool
	outputShare float64
	callLatency time.Duration
}

func (c *costFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&c.prices, "prices", "", "YAML or JSON price file whose models and prices are added to the embedded table (see imodel/prices.yaml for its form)")
	fl.Float64Var(&c.maxCost, "max-cost", 0, "spend cap in US dollars for the results file, what its earlier lines cost included: admission stops before it would be passed, what was admitted finishes, and the command exits 3 saying how many requests remain (0: no cap)")
	fl.StringVar(&c.cacheDir, "cache-dir", "", "answer requests whose reply is stored in this directory without a call or a cost, and store every reply there (by default only requests at temperature 0, and embeddings, are answered from it)")
	fl.BoolVar(&c.cacheAll, "cache-all", false, "with --cache-dir, answer any request whose reply is stored, whatever its temperature (for reruns of an evaluation)")
	fl.BoolVar(&c.dryRun, "dry-run", false, "send nothing, need no key: read the whole input and print its requests, invalid lines, tokens, cost range and expected wall time at the given limits")
	fl.Float64Var(&c.outputShare, "output-share", batch.DefaultOutputShare, "--dry-run: the share of its max output tokens a reply is assumed to use, for the likely cost")
	fl.DurationVar(&c.callLatency, "call-latency", batch.DefaultCallLatency, "--dry-run: the time a call is assumed to take, for the wall time at --concurrency")
}

// apply sets the run's prices, spend cap and cache from the flags, with
// usage errors that name them. Under a cap, the price of the endpoint's
// default model, if it has one, must be known before anything is sent.
func (c *costFlags) apply(cfg *batch.Config) error {
	if c.prices != "" {
		prices, err := imodel.LoadPrices(c.prices)
		if err != nil {
			return usagef("--prices: %v", err)
		}
		cfg.Prices = prices
	}
	cfg.MaxCost = c.maxCost
	if c.maxCost > 0 {
		prices := cfg.Prices
		if prices == nil {
			prices = imodel.DefaultPrices()
		}
		check := func(ep imodel.EndpointConfig, where string) error {
			model := ep.Model
			if model == "" {
				model = ep.Deployment
			}
			if _, ok := prices.Lookup(ep.Provider, model); model != "" && !ok {
				return usagef("--max-cost: no price for %s model %q%s, so what it spends cannot be counted: give it with --prices", ep.Provider, model, where)
			}
			return nil
		}
		if err := check(cfg.Endpoint, ""); err != nil {
			return err
		}
		for _, d := range cfg.Deployments {
			ep := d.Endpoint
			if ep.Model == "" {
				ep.Model = d.Group
			}
			if err := check(ep, fmt.Sprintf(" (deployment %q)", d.Name)); err != nil {
				return err
			}
		}
	}
	switch {
	case c.cacheDir != "" && len(cfg.Deployments) > 0:
		// A routed request is built again for each deployment it tries,
		// on the router's goroutine, where a cache read has no place.
		return usagef("--cache-dir: not with deployments (--config deployments:); run each model on its own endpoint to use the cache")
	case c.cacheAll && c.cacheDir == "":
		return usagef("--cache-all: needs --cache-dir")
	case c.cacheDir != "":
		cache, err := imodel.NewFileCache(c.cacheDir)
		if err != nil {
			return usagef("--cache-dir: %v", err)
		}
		cfg.Cache = cache
		if c.cacheAll {
			cfg.CacheMode = imodel.CacheAll
		}
	}
	return nil
}

// spendCapExit is the exit of a run the spend cap stopped.
func spendCapExit(sum *batch.Summary) error {
	s := sum.Snapshot()
	return exitError{exitSpendCap, fmt.Errorf("stopped at --max-cost $%g ($%.6f spent): %d requests remain; rerun with a higher --max-cost to continue", s.SpendLimit, s.Spent(), s.Remaining())}
}
