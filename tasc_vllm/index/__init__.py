"""The index: a task corpus stored as text (``.tasc``), tokenized per served model into an
n-gram table and cached, and the table with what was learned while serving."""
