"""Labels from the field: a task's pool of unlabelled texts (`pool`), the rows worth labelling
first (`select`, `strategies`), the formats teams exchange labels in (`exchange`) and the local
labelling page (`queue`, `page`). Every label goes to the store as it is given."""
