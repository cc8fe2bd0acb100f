/* config: placeholder, being written */
