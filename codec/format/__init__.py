"""What a file and a bundle are: the .pqm container (:mod:`.bitstream`), the bundle's keys
(:mod:`.schema`) and its torch-free reading (:mod:`.bundle`), and the argument rules for rate
points and crops (:mod:`.checks`)."""
