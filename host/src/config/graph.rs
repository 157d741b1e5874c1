//! Dependency order of maps: a topological sort that keeps file order where it can, and
//! the cycles that prevent one.

use std::collections::BTreeSet;

/// Orders nodes `0..deps.len()` so that each comes after every node in its `deps`
/// entry; among nodes free to go next, the lowest index (earliest in the file) goes
/// first. On failure, returns the cycles, each as a path starting at its lowest node
/// (`[a, b, c]` for `a -> b -> c -> a`, where `a` depends on `b`), lowest first, each
/// once.
pub(super) fn dependency_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<Vec<usize>>> {
    let count = deps.len();
    let mut waiting_on: Vec<BTreeSet<usize>> = deps
        .iter()
        .map(|parents| parents.iter().copied().collect())
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (node, parents) in waiting_on.iter().enumerate() {
        for &parent in parents {
            dependents[parent].push(node);
        }
    }
    let mut ready: BTreeSet<usize> = (0..count).filter(|&n| waiting_on[n].is_empty()).collect();
    let mut order = Vec::with_capacity(count);
    while let Some(node) = ready.pop_first() {
        order.push(node);
        for &child in &dependents[node] {
            waiting_on[child].remove(&node);
            if waiting_on[child].is_empty() {
                ready.insert(child);
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }

    // Every node left waits on another node left, so following the lowest such parent
    // from any of them must come back round to a node already on the path.
    let mut in_cycle = vec![false; count];
    let mut cycles = Vec::new();
    for start in 0..count {
        if waiting_on[start].is_empty() || in_cycle[start] {
            continue;
        }
        let mut path = Vec::new();
        let mut node = start;
        let cycle = loop {
            if let Some(at) = path.iter().position(|&seen| seen == node) {
                break path.split_off(at);
            }
            path.push(node);
            node = *waiting_on[node]
                .first()
                .expect("a node left after the sort waits on another");
        };
        if cycle.iter().any(|&member| in_cycle[member]) {
            continue;
        }
        for &member in &cycle {
            in_cycle[member] = true;
        }
        let lowest = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, member)| **member)
            .map_or(0, |(at, _)| at);
        let mut cycle = cycle;
        cycle.rotate_left(lowest);
        cycles.push(cycle);
    }
    cycles.sort();
    Err(cycles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_first_then_file_order() {
        // 0 depends on 2, 1 has none, 2 depends on 1, 3 has none.
        let deps = vec![vec![2], vec![], vec![1], vec![]];
        assert_eq!(dependency_order(&deps), Ok(vec![1, 2, 0, 3]));
    }

    #[test]
    fn cycles_are_found_once_from_their_lowest_node() {
        // 0 -> 1 -> 2 -> 0; 3 depends on the cycle; 4 -> 4; 5 free.
        let deps = vec![vec![1], vec![2], vec![0], vec![1], vec![4], vec![]];
        assert_eq!(dependency_order(&deps), Err(vec![vec![0, 1, 2], vec![4]]));
        // Entered in the middle, still reported from the lowest node.
        let deps = vec![vec![], vec![3], vec![1], vec![2]];
        assert_eq!(dependency_order(&deps), Err(vec![vec![1, 3, 2]]));
    }
}
