"""Upload handling: everything the addon (`proxy/addon.py`) does with a request to an enabled
site, from reading its body to the rebuilt request the site receives."""
