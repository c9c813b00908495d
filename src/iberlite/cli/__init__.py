"""The command line: parse, call one library function, print. Tables are built in `views.py`
and printed by `tables.py`; nothing here writes to the store.
"""
