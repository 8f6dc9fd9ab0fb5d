//! The build front end: the workspace, BUILD files, target patterns and the target graph.
