package imodel

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Router serves model groups from several deployments, each a Model of its
// own bound to a deployment of a runtime.Router: one model name over
// several keys, endpoints or providers, each at its own limits, with the
// runtime router's load balancing by available budget, breakers and
// fallback. It offers Model's calls; a request's "model" (ChatRequest.Model,
// the payload's "model") names its group, and each deployment's request
// names the model as that deployment's endpoint does (EndpointConfig.Model,
// by default the deployment's runtime.Deployment.Model).
//
// A chat that falls back to a deployment of another provider is sent in
// that provider's dialect: Chat and Stream map their ChatRequest for each
// provider as Model does, and a raw chat body given to Invoke or Submit,
// written for its group's first deployment, is read as a ChatRequest and
// mapped again (see ErrNotPortable for what cannot be).
//
// A plain Model stays the one-deployment case. Its methods are safe for
// concurrent use.
type Router struct {
	rt     *runtime.Router
	models map[string]*Model // by deployment name
	first  map[string]*Model // by group: the model of its first deployment
	order  []string          // deployment names, in the runtime router's order
	closed atomic.Bool
}

// NewRouter binds an endpoint to each deployment of rt, by its name, as
// New binds one to an executor: each deployment's requests are built by a
// Model of that endpoint on that deployment's executor, so that its
// rate-limit headers pause that deployment alone. Every deployment needs
// an endpoint, and every endpoint a deployment. An endpoint without a
// Model gets the deployment's. opts apply to every deployment's Model.
// Closing the Router closes those models; it leaves rt running.
func NewRouter(rt *runtime.Router, endpoints map[string]EndpointConfig, opts ...Option) (*Router, error) {
	if rt == nil {
		return nil, badConfig("router", "nil runtime.Router")
	}
	r := &Router{rt: rt, models: map[string]*Model{}, first: map[string]*Model{}}
	for _, d := range rt.Deployments() {
		ep, ok := endpoints[d.Name]
		if !ok {
			r.Close()
			return nil, badConfig(fmt.Sprintf("Endpoints[%q]", d.Name), "no endpoint for deployment %s", d.Name)
		}
		if ep.Model == "" {
			ep.Model = d.Model
		}
		if ep.Name == "" {
			ep.Name = d.Name
		}
		m, err := New(rt.Executor(d.Name), ep, opts...)
		if err != nil {
			r.Close()
			if ce, ok := err.(*messages.ConfigError); ok {
				return nil, badConfig(fmt.Sprintf("Endpoints[%q].%s", d.Name, ce.Field), "%s", ce.Reason)
			}
			return nil, err
		}
		r.models[d.Name] = m
		r.order = append(r.order, d.Name)
		if r.first[d.Group] == nil {
			r.first[d.Group] = m
		}
	}
	for _, name := range slices.Sorted(maps.Keys(endpoints)) {
		if r.models[name] == nil {
			r.Close()
			return nil, badConfig(fmt.Sprintf("Endpoints[%q]", name), "no deployment of that name")
		}
	}
	return r, nil
}

// Runtime returns the runtime router the Router submits to.
func (r *Router) Runtime() *runtime.Router { return r.rt }

// Model returns the model of the deployment of that name, or nil.
func (r *Router) Model(deployment string) *Model { return r.models[deployment] }

// Close closes the deployments' models. Calls after Close fail with
// ErrClosed; requests already submitted go on.
func (r *Router) Close() error {
	r.closed.Store(true)
	for _, m := range r.models {
		m.Close()
	}
	return nil
}

// group is the group a request names, or the only one when it names none.
func (r *Router) group(model string) (string, error) {
	if r.closed.Load() {
		return "", ErrClosed
	}
	if model != "" {
		return model, nil
	}
	if groups := r.rt.Groups(); len(groups) == 1 {
		return groups[0], nil
	}
	return "", fmt.Errorf("%w: no model: say which of %v", messages.ErrInvalidRequest, r.rt.Groups())
}

// builder makes the runtime.Builder of one call: op for the deployment's
// model, then its request with opts.
func (r *Router) builder(op func(m *Model) (operation, error), opts []CallOption) runtime.Builder {
	return func(deployment string) (messages.Request, error) {
		m := r.models[deployment]
		o, err := op(m)
		if err != nil {
			return messages.Request{}, err
		}
		return m.request(o, opts)
	}
}

// invokeOp is the operation of Invoke for m: payload sent to m's
// endpoint, named as m names the model, and put in m's dialect when it is
// a chat written in another (src's).
func invokeOpFor(m, src *Model, payload map[string]any) (operation, error) {
	p := maps.Clone(payload)
	delete(p, "model")
	from, to := src.cfg.Provider.dialect(), m.cfg.Provider.dialect()
	_, chat := payload["messages"]
	if !chat || from == to || from == anyJSON || to == anyJSON || m.cfg.Path != providers[m.cfg.Provider].chatPath {
		return m.invokeOp(p), nil
	}
	cr, err := portableChat(p, from)
	if err != nil {
		return operation{}, err
	}
	if p, err = m.chatPayload(cr, false); err != nil {
		return operation{}, err
	}
	return operation{method: http.MethodPost, path: m.cfg.Path, payload: p, decode: decodeGeneric}, nil
}

// Submit sends payload to the deployments of the group its "model" names
// (the only group, if it names none) without waiting, and returns the
// request's handle; see Model.Invoke for the merging of fields.
func (r *Router) Submit(ctx context.Context, payload map[string]any, opts ...CallOption) (*runtime.Handle, error) {
	s, err := r.NewRequest(payload, opts...)
	if err != nil {
		return nil, err
	}
	return r.rt.Submit(ctx, s.Group, s.Build)
}

// Invoke is Submit, waiting for the outcome, as Model.Invoke.
func (r *Router) Invoke(ctx context.Context, payload map[string]any, opts ...CallOption) (*Response, error) {
	h, err := r.Submit(ctx, payload, opts...)
	if err != nil {
		return nil, err
	}
	ev := awaitEnd(h)
	resp := &Response{Event: ev}
	if rr, ok := ev.Response(); ok {
		resp.StatusCode, resp.Header, resp.Body = rr.StatusCode, rr.Header, rr.Body
	}
	return resp, ev.Err()
}

// NewRequest builds the message with which an actor submits payload to
// the router (send it to Runtime().PID() with a sender), as Model.NewRequest
// does for an executor.
func (r *Router) NewRequest(payload map[string]any, opts ...CallOption) (runtime.RoutedSubmit, error) {
	name, _ := payload["model"].(string)
	group, err := r.group(name)
	if err != nil {
		return runtime.RoutedSubmit{}, err
	}
	src := r.first[group]
	if src == nil {
		return runtime.RoutedSubmit{Group: group}, nil // the runtime router refuses an unknown group
	}
	op := func(m *Model) (operation, error) { return invokeOpFor(m, src, payload) }
	return runtime.RoutedSubmit{Group: group, Build: r.builder(op, opts)}, nil
}

// Chat sends a chat request to the deployments of the group r.Model
// names, and waits for the reply, as Model.Chat.
func (r *Router) Chat(ctx context.Context, req ChatRequest, opts ...CallOption) (*ChatResponse, error) {
	h, err := r.SubmitChat(ctx, req, opts...)
	if err != nil {
		return nil, err
	}
	return ChatResult(awaitEnd(h))
}

// SubmitChat is Chat without waiting; ChatResult reads the reply.
func (r *Router) SubmitChat(ctx context.Context, req ChatRequest, opts ...CallOption) (*runtime.Handle, error) {
	s, err := r.NewChatRequest(req, opts...)
	if err != nil {
		return nil, err
	}
	return r.rt.Submit(ctx, s.Group, s.Build)
}

// NewChatRequest builds the message with which an actor submits a chat
// to the router; ChatResult reads its terminal snapshot.
func (r *Router) NewChatRequest(req ChatRequest, opts ...CallOption) (runtime.RoutedSubmit, error) {
	return r.chat(req, nil, opts)
}

func (r *Router) chat(req ChatRequest, s *Stream, opts []CallOption) (runtime.RoutedSubmit, error) {
	group, err := r.group(req.Model)
	if err != nil {
		return runtime.RoutedSubmit{}, err
	}
	req.Model = "" // each deployment names the model its own way
	op := func(m *Model) (operation, error) { return m.chatOp(req, s) }
	return runtime.RoutedSubmit{Group: group, Build: r.builder(op, opts)}, nil
}

// Stream starts a streamed chat of the group r.Model names, as
// Model.Stream: an attempt that fails before its first chunk goes on at
// another deployment; once text has come, the stream ends with it.
func (r *Router) Stream(ctx context.Context, req ChatRequest, opts ...CallOption) (*Stream, error) {
	s := &Stream{}
	sub, err := r.chat(req, s, opts)
	if err != nil {
		return nil, err
	}
	h, err := r.rt.Submit(ctx, sub.Group, sub.Build)
	if err != nil {
		return nil, err
	}
	s.h = h
	go s.closeAtEnd()
	return s, nil
}

// Embed returns one embedding vector per input from the deployments of
// group model, as Model.Embed.
func (r *Router) Embed(ctx context.Context, model string, inputs []string, opts ...CallOption) (*EmbedResponse, error) {
	group, err := r.group(model)
	if err != nil {
		return nil, err
	}
	op := func(m *Model) (operation, error) { return m.embedOp(inputs) }
	h, err := r.rt.Submit(ctx, group, r.builder(op, opts))
	if err != nil {
		return nil, err
	}
	return embedResult(awaitEnd(h))
}

// RouterStats are a router's figures: the runtime router's, and the
// responses each deployment's model met, by deployment name (their
// RateLimited is the deployment's 429s).
type RouterStats struct {
	runtime.RouterStats
	HTTP map[string]Stats
}

// Stats returns the router's figures.
func (r *Router) Stats() RouterStats {
	s := RouterStats{RouterStats: r.rt.Stats(), HTTP: map[string]Stats{}}
	for _, name := range r.order {
		s.HTTP[name] = r.models[name].Stats()
	}
	return s
}
