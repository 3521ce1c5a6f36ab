package parser

import (
	"fmt"
	"strings"
)

// semCycleWarnings warns of a semaphore that can hang a flow whatever its
// count: more stages using it on one data-connected part of the graph
// than it has units. Stages joined by data edges wait for each other
// while they run: a reader for its writer's data, a writer for its
// reader to make room (a full pipe). When the units are all held by
// stages that so wait for a user still waiting for a unit, none can end
// and give one back. The check is conservative: it does not ask whether
// the edges' direction and buffers would let the flow through (a fan-out
// tee spills rather than blocks), so it warns rather than refuses. Count
// 1 with a directed data path between two users is a certain deadlock,
// refused by checkSemDeadlocks; see docs/locks.md.
func semCycleWarnings(g *Graph) ErrorList {
	index := map[*Stage]int{}
	for i, s := range g.Stages {
		index[s] = i
	}
	// Data-connected components, edges taken both ways.
	parent := make([]int, len(g.Stages))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	for _, e := range g.Edges {
		if e.From.Stage != nil && e.To.Stage != nil {
			parent[find(index[e.From.Stage])] = find(index[e.To.Stage])
		}
	}
	var w ErrorList
	for _, sem := range g.Sems {
		users := map[int][]string{} // component -> users, in file order
		var order []int
		for _, s := range g.Stages {
			for _, u := range s.Uses {
				if u != sem {
					continue
				}
				c := find(index[s])
				if users[c] == nil {
					order = append(order, c)
				}
				users[c] = append(users[c], s.Name)
			}
		}
		for _, c := range order {
			us := users[c]
			if len(us) <= sem.Count {
				continue
			}
			w = append(w, &Error{File: g.File, Pos: sem.Pos, Msg: fmt.Sprintf(
				"warning: semaphore %s (count %d) is used by %d stages joined by data edges (%s): those holding its units can wait on data to or from one that waits for a unit, and the flow would hang (see docs/locks.md)",
				sem.Name, sem.Count, len(us), strings.Join(us, ", "))})
		}
	}
	return w
}
