enum E2BLocalPlaceholder {}
